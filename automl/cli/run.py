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
    parser.add_argument("--gpus-per-trial", type=int, metavar="K",
                        help="train each trial on K devices at once, one process each (default: [study] "
                             "gpus_per_trial, 1); with --device cpu, K gloo processes on the CPU")
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
    prepared, url, devices, ranks = _prepare(args)
    if ranks is None:
        return _run_study(args, prepared, url, devices)
    from automl.study.ranks import follow, trial_ranks
    from automl.study.runner import current_sources, make_objective

    with trial_ranks(ranks, prepared.device, _follower_argv(args, ranks), url, args.threads,
                     current_sources(prepared)) as group:
        prepared.group = group
        if not group.is_main:
            _stop_with_launcher()
            return follow(group, make_objective(prepared))
        return _run_study(args, prepared, url, devices)


def _run_study(args: argparse.Namespace, prepared, url: str, devices: list[str]) -> int:
    from automl.report.progress import RunDisplay
    from automl.study.processes import start_workers, watch, worker_argv, worker_failure
    from automl.study.ranks import env_for_workers
    from automl.study.runner import create_study, run_study, unavailable_for_model

    if args.worker is not None:
        return _run_worker(args, prepared)
    study = create_study(prepared)
    model = prepared.study_file.config.task.model
    for name, reason in unavailable_for_model(prepared).items():  # said once, not by each trial
        print(f"automl: note: trick {name!r} is unavailable for model {model!r}, so its trials run without it: "
              f"{reason}", file=sys.stderr)
    with RunDisplay(prepared, stderr()) as display:
        if args.workers > 1:
            envs = env_for_workers(_gpus_per_trial(args, prepared.study_file), args.workers, prepared.device)
            status = watch(study, start_workers(worker_argv(args, prepared.session), url, devices, envs=envs),
                           display.on_trial)
        else:
            study = run_study(prepared, study, on_trial=display.on_trial)
            status = 0
    if status:
        print(f"automl: error: {worker_failure(status)}", file=sys.stderr)
        return 1
    return print_best(study, prepared.storage_url, top=1, as_json=args.json)


def _stop_with_launcher() -> None:
    """A rank that automl started (not torchrun) stops when the rank 0 that started it dies."""
    import os

    from automl.interrupts import PARENT_PID_VAR, stop_with_parent

    if PARENT_PID_VAR in os.environ and int(os.environ[PARENT_PID_VAR]) == os.getppid():
        stop_with_parent(os.getppid())


def _follower_argv(args: argparse.Namespace, ranks) -> list[str]:
    """The command line of ranks 1..K-1: rank 0's own, on its device (they are told their rank apart)."""
    from automl.study.processes import worker_argv

    return [*worker_argv(args, args.session or 0), "--device", args.device or "auto",
            "--gpus-per-trial", str(ranks.world_size)]


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
    """The study checked end to end before anything is written; the storage URL, each worker's device, and
    this process's place among the ranks of a trial on several devices (None on one)."""
    from automl.devices import resolve_device
    from automl.storage import resolve_url
    from automl.study.config import load_study_file
    from automl.study.processes import check_workers, split_devices
    from automl.study.runner import Overrides, prepare

    study_file = load_study_file(args.study_file, args.variant)
    url = resolve_url(args.storage, study_file.config.study.storage)
    check_workers(args.workers, url)
    devices = split_devices(args.device, args.workers)
    ranks, device = _ranks(args, _gpus_per_trial(args, study_file), resolve_device(devices[0]))
    prepared = prepare(study_file, host(args.plugin, args.traceback), Overrides(
        storage=url, study_name=args.study_name, n_trials=args.n_trials, total_budget=args.total_budget,
        trial_budget=args.trial_budget, device=str(device), seed=args.seed,
        accept_task_change=args.accept_task_change, accept_plugin_change=args.accept_plugin_change),
        data_on_cpu=args.workers > 1 and args.worker is None)
    for other in set(devices[1:]):
        resolve_device(other)
    if args.threads and prepared.device.type == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    quiet_optuna()
    return prepared, url, devices, ranks


def _gpus_per_trial(args: argparse.Namespace, study_file) -> int:
    return study_file.config.study.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial


def _ranks(args: argparse.Namespace, k: int, device):
    """(this process's ranks or None, its device): from torchrun's environment (or automl's, in ranks it
    started), else rank 0 of ``k`` when this process trains the trials (not a parent of --workers N)."""
    import os

    from automl.study.ranks import check_ranks
    from automl.train.distributed import Ranks, rank_device

    from_env = Ranks.from_env()
    if from_env is not None and from_env.world_size == 1:
        from_env = None
    check_ranks(k, device, args.device, args.workers, from_env)
    if from_env is not None:
        return from_env, rank_device(device, from_env)
    if k == 1 or args.workers > 1:
        return None, device
    if device.type == "cpu":  # the cores this process had are shared by its k ranks
        args.threads = max(1, (args.threads or os.cpu_count() or 1) // k)
    ranks = Ranks(0, k, 0)
    return ranks, rank_device(device, ranks)
