"""`automl confirm STUDY.toml`: train the best trials of a study again over paired seeds, and rank them by mean."""

from __future__ import annotations

import argparse
from typing import Any

from automl.cli.compare import DEFAULT_SEEDS, CellProgress
from automl.cli.options import host, json_option, plugin_option, positive_int, print_json, quiet_optuna, stdout, \
    storage_option

DEFAULT_TOP = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_file", metavar="STUDY.toml")
    parser.add_argument("--variant", metavar="NAME", help="apply the file's [variants.NAME] table (e.g. cifar10)")
    storage_option(parser)
    parser.add_argument("--top", type=positive_int, default=DEFAULT_TOP, metavar="K",
                        help=f"the K best trials of the study (default {DEFAULT_TOP})")
    parser.add_argument("--seeds", type=positive_int, default=DEFAULT_SEEDS, metavar="N",
                        help=f"paired seeds per trial, at least 2 (default {DEFAULT_SEEDS})")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    plugin_option(parser)
    json_option(parser, "print the confirmed ranking as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.interrupts import stop_on_signals

    with stop_on_signals():  # stopped, the next run trains only the missing cells
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from automl.storage import open_storage, resolve_url
    from automl.study.compare import check_seeds
    from automl.study.config import load_study_file
    from automl.study.confirm import confirm
    from automl.study.records import load_study
    from automl.study.runner import Overrides, prepare

    check_seeds(args.seeds)
    study_file = load_study_file(args.study_file, args.variant)
    url = resolve_url(args.storage, study_file.config.study.storage)
    prepared = prepare(study_file, host(args.plugin, args.traceback), Overrides(storage=url, device=args.device))
    quiet_optuna()
    study = load_study(prepared.name, open_storage(url, create=False), url)
    with CellProgress() as progress:
        result = confirm(prepared, study, args.top, args.seeds, on_queued=progress.add, on_trial=progress.done)
    if args.json:
        print_json(result)
    else:
        print_confirmed(result)
    return 0


def print_confirmed(result: dict[str, Any]) -> None:
    """The confirmed ranking as a table, as `automl confirm` and `automl best --confirmed` show it."""
    from rich.table import Table

    from automl.stats import MEAN_CI_METHOD

    table = Table(title=f"{result['study']}: best trials over {result['seeds']} paired seeds at {result['budget']}")
    for column in ("rank", "trial", "n", "mean val error", "95% CI", "in the search", "search rank"):
        table.add_column(column, justify="right")
    for row in result["ranking"]:
        ci = "-" if row["ci"] is None else f"[{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]"
        mean = "-" if row["mean"] is None else f"{row['mean']:.4f}"
        table.add_row(str(row["rank"]), str(row["trial"]), str(row["n"]), mean, ci, f"{row['search_value']:.4f}",
                      str(row["rank_in_search"]))
    console = stdout()
    console.print(table)
    console.print(f"intervals: 95%, {MEAN_CI_METHOD}", soft_wrap=True)
