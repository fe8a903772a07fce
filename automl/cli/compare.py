"""`automl compare STUDY.toml`: train the study's fixed recipes at each budget over paired seeds, and compare them."""

from __future__ import annotations

import argparse

from automl.cli.options import (gpus_option, host, json_option, plugin_option, positive_int, print_json,
                                quiet_optuna, stdout, storage_option, to_stderr, worker_options)
from automl.cli.report import output_options
from automl.seeds import DEFAULT_MAX_SEEDS, DEFAULT_TOLERANCE, MIN_SEEDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_file", metavar="STUDY.toml")
    parser.add_argument("--variant", metavar="NAME", help="apply the file's [variants.NAME] table (e.g. cifar10)")
    storage_option(parser)
    parser.add_argument("--max-seeds", type=positive_int, metavar="N",
                        help=f"the sequential design (the default): paired seeds are added in rounds, one per open "
                             f"arm, and each arm stops once a group-sequential test decides it better, worse or "
                             f"equivalent; at most N seeds per arm and budget (default: [compare] max_seeds, else "
                             f"{DEFAULT_MAX_SEEDS}). Seed s gives every arm the same initial weights and data order")
    parser.add_argument("--tolerance", type=float, metavar="T",
                        help=f"call an arm equivalent to the reference once its interval lies within T of it, either "
                             f"side (default: [compare] tolerance, else {DEFAULT_TOLERANCE}: half a percentage point; "
                             "0: never)")
    parser.add_argument("--seeds", type=positive_int, metavar="N",
                        help=f"the fixed design instead: exactly N paired seeds per arm and budget (at least "
                             f"{MIN_SEEDS}), tested once by the exact sign-flip test with Holm")
    parser.add_argument("--drop-losers", action="store_true",
                        help="leave an arm out of the larger budgets once the sequential test finds it worse than "
                             "the best arm at a budget (orders can cross between budgets, so off by default)")
    parser.add_argument("--budgets", metavar="B1,B2,...",
                        help="trial budgets to compare at, in order, e.g. 10s,20s,40s (default: the study's)")
    parser.add_argument("--reference", metavar="ARM",
                        help="the arm the others are tested against (default: [compare] reference, else the arm "
                             "with the fewest tricks, 'plain' where there is one)")
    worker_options(parser)
    gpus_option(parser)
    parser.add_argument("--n-trials", type=int, help=argparse.SUPPRESS)  # the trials its parent bounded it to
    output_options(parser)
    plugin_option(parser)
    json_option(parser, "print the comparison as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.interrupts import stop_on_signals

    with stop_on_signals():  # SIGTERM stops a comparison as Ctrl-C does; the next run trains the missing cells
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from automl.api.comparisons import report_outputs
    from automl.study.launch import in_ranks, prepare_compare

    outputs = report_outputs(args)
    launch, design = prepare_compare(args, lambda: host(args.plugin, args.traceback))
    quiet_optuna()
    # With --gpus-per-trial K, the ranks other than 0 follow the cells this process (rank 0) trains.
    return in_ranks(launch, lambda: _compare(launch, design, outputs))


def _compare(launch, design, outputs) -> int:
    from automl.api.comparisons import compare_launched, write_comparison_report
    from automl.report.tables import print_comparison
    from automl.study.launch import compare_worker

    if launch.args.worker is not None:
        return compare_worker(launch, design)
    result = compare_launched(launch, design, to_stderr, progress=True)
    if launch.args.json:
        print_json(result)
    else:
        print_comparison(result, stdout())
    if outputs is not None:
        write_comparison_report(result, launch.url, *outputs, say=to_stderr)
    return 0
