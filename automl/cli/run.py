"""`automl run STUDY.toml`: run or resume a tuning study, in this process or in worker processes."""

from __future__ import annotations

import argparse
import sys

from automl.cli.options import (host, json_option, plugin_option, positive_int, print_best, quiet_optuna, stderr,
                                storage_option, worker_options)
from automl.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_file", metavar="STUDY.toml")
    parser.add_argument("--variant", metavar="NAME", help="apply the file's [variants.NAME] table (e.g. cifar10)")
    storage_option(parser)
    parser.add_argument("--study-name", help="name in the database (default: [study] name)")
    parser.add_argument("--n-trials", type=positive_int, help="stop after this many trials in the study")
    parser.add_argument("--total-budget", metavar="DUR", help="device time of the whole study, e.g. 10m")
    parser.add_argument("--trial-budget", metavar="DUR", help="budget of one trial: 90s, 5m, 30ep, 500steps")
    worker_options(parser)
    parser.add_argument("--seed", type=int, help="sampler and training seed (default: [study] seed)")
    parser.add_argument("--accept-task-change", action="store_true",
                        help="resume a study although the file now names another data set or model (their "
                             "trials are then mixed in one study)")
    plugin_option(parser)
    parser.add_argument("--accept-plugin-change", action="store_true",
                        help="resume a study even when one of its tricks now comes from another plugin or version")
    json_option(parser, "print the best trial as JSON at the end")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.interrupts import stop_on_signals

    with stop_on_signals():  # SIGTERM (schedulers, docker stop, timeout) stops a study as Ctrl-C does
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from automl.report.progress import RunDisplay
    from automl.study.processes import start_workers, watch, worker_argv, worker_failure
    from automl.study.runner import create_study, run_study, unavailable_for_model

    prepared, url, devices = _prepare(args)
    if args.worker is not None:
        return _run_worker(args, prepared)
    study = create_study(prepared)
    model = prepared.study_file.config.task.model
    for name, reason in unavailable_for_model(prepared).items():  # said once, not by each trial
        print(f"automl: note: trick {name!r} is unavailable for model {model!r}, so its trials run without it: "
              f"{reason}", file=sys.stderr)
    with RunDisplay(prepared, stderr()) as display:
        if args.workers > 1:
            status = watch(study, start_workers(worker_argv(args, prepared.session), url, devices),
                           display.on_trial)
        else:
            study = run_study(prepared, study, on_trial=display.on_trial)
            status = 0
    if status:
        print(f"automl: error: {worker_failure(status)}", file=sys.stderr)
        return 1
    return print_best(study, prepared.storage_url, top=1, as_json=args.json)


def _run_worker(args: argparse.Namespace, prepared) -> int:
    """One of ``--workers N``: stops with its parent; an interruption is its parent's to report."""
    import os

    from automl.interrupts import PARENT_PID_VAR, exit_code, stop_with_parent
    from automl.study.runner import create_study, run_study

    if args.session is None:
        raise UserError("--worker needs --session: worker processes are started by automl run --workers N")
    stop_with_parent(int(os.environ.get(PARENT_PID_VAR, os.getppid())))
    prepared.session, prepared.worker = args.session, args.worker
    try:
        run_study(prepared, create_study(prepared, new_session=False))
    except KeyboardInterrupt as exc:
        return exit_code(exc)
    return 0


def _prepare(args: argparse.Namespace):
    """The study checked end to end before anything is written; the storage URL and each worker's device."""
    from automl.devices import resolve_device
    from automl.storage import resolve_url
    from automl.study.config import load_study_file
    from automl.study.processes import check_workers, split_devices
    from automl.study.runner import Overrides, prepare

    study_file = load_study_file(args.study_file, args.variant)
    url = resolve_url(args.storage, study_file.config.study.storage)
    check_workers(args.workers, url)
    devices = split_devices(args.device, args.workers)
    prepared = prepare(study_file, host(args.plugin, args.traceback), Overrides(
        storage=url, study_name=args.study_name, n_trials=args.n_trials, total_budget=args.total_budget,
        trial_budget=args.trial_budget, device=devices[0], seed=args.seed,
        accept_task_change=args.accept_task_change, accept_plugin_change=args.accept_plugin_change),
        data_on_cpu=args.workers > 1 and args.worker is None)
    for device in set(devices[1:]):
        resolve_device(device)
    if args.threads and prepared.device.type == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    quiet_optuna()
    return prepared, url, devices
