"""`automl train RUN.toml`: train an exported trial again over seeds; validation and test error per seed."""

from __future__ import annotations

import argparse
import sys

from automl.cli.options import (host, json_option, plugin_option, positive_int, print_json, stderr, stdout,
                                threads_option, warn_if_overloaded)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_file", metavar="RUN.toml")
    parser.add_argument("--budget", metavar="DUR", help="instead of the trial's budget: 90s, 5m, 30ep, 500steps")
    parser.add_argument("--seeds", type=positive_int, default=1, metavar="K",
                        help="train K times, seeds from the trial's own upwards (default 1)")
    parser.add_argument("-o", "--out", metavar="DIR", help="folder of the models (default: beside the run file)")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    threads_option(parser)
    plugin_option(parser)
    json_option(parser, "print every seed's errors, the mean and spread, and what was trained as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.errors import TrialFailed
    from automl.report.progress import SeedProgress
    from automl.study.standalone import prepare_run, record, train_seeds

    plugins = host(args.plugin, args.traceback)
    prepared = prepare_run(args.run_file, plugins, seeds=args.seeds, budget=args.budget, device=args.device,
                           out_dir=args.out)
    for warning in prepared.replayed.warnings:
        print(f"automl: warning: {warning}", file=sys.stderr)
    if prepared.device.type == "cpu":
        from automl.threads import use_threads

        use_threads(args.threads)
    warn_if_overloaded(prepared.device, [prepared.budget])
    try:
        with SeedProgress(prepared.seeds, stderr()) as progress:
            runs = train_seeds(prepared, plugins, on_step=progress)
    except TrialFailed as exc:
        print(f"automl: error: training failed: {exc}", file=sys.stderr)
        return 1
    data = record(prepared, runs)
    if args.json:
        print_json(data)
        return 0
    from automl.report.tables import results_table, trained_line

    console = stdout()
    console.print(results_table(data))
    console.print(trained_line(data), soft_wrap=True)
    return 0
