"""`automl run STUDY.toml`: run or resume a tuning study, in this process or in worker processes."""

from __future__ import annotations

import argparse

from automl.cli.options import (gpus_option, host, json_option, plugin_option, positive_int, print_best,
                                quiet_optuna, storage_option, to_stderr, worker_options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_file", metavar="STUDY.toml")
    parser.add_argument("--variant", metavar="NAME", help="apply the file's [variants.NAME] table (e.g. cifar10)")
    storage_option(parser)
    parser.add_argument("--study-name", help="name in the database (default: [study] name)")
    parser.add_argument("--n-trials", type=positive_int, help="stop after this many trials in the study")
    parser.add_argument("--total-budget", metavar="DUR", help="device time of the whole study, e.g. 10m")
    parser.add_argument("--trial-budget", metavar="DUR", help="budget of one trial: 90s, 5m, 30ep, 500steps")
    worker_options(parser)
    gpus_option(parser)
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
    from automl.study.launch import in_ranks, prepare_run

    launch = prepare_run(args, lambda: host(args.plugin, args.traceback))
    quiet_optuna()
    return in_ranks(launch, lambda: _run_study(launch))


def _run_study(launch) -> int:
    from automl.api.studies import train_run
    from automl.study.launch import run_worker

    if launch.args.worker is not None:
        return run_worker(launch)
    study = train_run(launch, to_stderr, progress=True)
    return print_best(study, launch.prepared.storage_url, top=1, as_json=launch.args.json)
