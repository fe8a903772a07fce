"""`automl compare STUDY.toml`: train the study's fixed recipes at each budget over paired seeds, and compare them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from automl.cli.options import (gpus_option, host, json_option, plugin_option, positive_int, print_json,
                                quiet_optuna, stderr, stdout, storage_option, warn_if_overloaded, worker_options)
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
    from automl.study.launch import in_ranks, prepare_compare

    outputs = _outputs(args)
    launch, design = prepare_compare(args, lambda: host(args.plugin, args.traceback))
    quiet_optuna()
    # With --gpus-per-trial K, the ranks other than 0 follow the cells this process (rank 0) trains.
    return in_ranks(launch, lambda: _compare(launch, design, outputs))


def _compare(launch, design, outputs) -> int:
    from automl.report.progress import CellProgress
    from automl.report.tables import print_comparison
    from automl.study.analysis import comparison, fixed_seeds_warning
    from automl.study.cells import completed_cells
    from automl.study.launch import compare_worker, train_budget
    from automl.study.processes import worker_failure
    from automl.study.race import losers

    args = launch.args
    if args.worker is not None:
        return compare_worker(launch, design)
    warn_if_overloaded(launch.prepared.device, design.budgets)
    if design.sequential is None and (warning := fixed_seeds_warning(design.seeds, len(design.arms) - 1)):
        print(f"automl: warning: {warning}", file=sys.stderr)
    per_budget, dropped = [], []
    with CellProgress(stderr()) as progress:
        for budget in design.budgets:
            study, status = train_budget(launch, design, budget, list(dropped), on_queued=progress.add,
                                         on_trial=progress.done)
            if status:
                print(f"automl: error: {worker_failure(status)}", file=sys.stderr)
                return 1
            done = completed_cells(study, design.seeds)
            per_budget.append((budget, done, list(dropped)))
            if design.drop_losers and design.sequential is not None:
                dropped += losers(done, design.running(dropped), design.sequential)
    _warn_missing(per_budget, design)
    result = comparison(launch.prepared.name, design.arms, design.reference, design.seeds, per_budget,
                        design.sequential)
    if result["steps_warning"]:
        print(f"automl: warning: {result['steps_warning']}", file=sys.stderr)
    if args.json:
        print_json(result)
    else:
        print_comparison(result, stdout())
    if outputs is not None:
        _write_report(result, launch.url, *outputs)
    return 0


def _outputs(args: argparse.Namespace):
    """(HTML file, PNG folder) of ``-o`` / ``--png``, checked before any cell is trained; None without either."""
    from automl.report.study_report import output_paths

    if args.output is None and args.png is None:
        return None
    return output_paths(args.output, args.png)


def _write_report(result: dict[str, Any], url: str, html, png_dir) -> None:
    """The comparison's report (as `automl report` on it writes it); its paths on stderr, stdout may be JSON."""
    from automl.report.comparison_report import build_comparison_report
    from automl.report.study_report import write_report
    from automl.storage import mask_url

    for path in write_report(build_comparison_report(result, mask_url(url)), html, png_dir):
        print(f"wrote {path}", file=sys.stderr)


def _warn_missing(per_budget, design) -> None:
    """Cells without a result are said, so that a mean over fewer seeds is never taken for the full one."""
    from automl.study.cells import missing_cells
    from automl.study.race import sequential_gaps

    for budget, done, dropped in per_budget:
        if design.sequential is not None:
            missing = sequential_gaps(done, design.running(dropped), design.reference, design.sequential)
        else:
            missing = missing_cells(done, design.arms, design.seeds)
        if missing:
            print(f"automl: warning: {missing} cell(s) at {budget} have no result yet (failed, or still running in "
                  "another run, or that run's, recovered once its heartbeat is older than the grace period); run "
                  "the same command again to train them", file=sys.stderr)
