"""`automl confirm STUDY`: the best trials trained again at paired seeds and ranked by their mean (the winner's curse)."""

from __future__ import annotations

import argparse

from automl.cli.options import (json_option, plugin_option, positive_int, print_json, quiet_optuna, stdout,
                                storage_option, study_argument, to_stderr)
from automl.seeds import DEFAULT_SEEDS, MIN_SEEDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study_argument(parser)
    parser.add_argument("--top", type=positive_int, default=3, metavar="K", help="the K best trials (default 3)")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                        help=f"train each N times, at the same N seeds for all (default {DEFAULT_SEEDS}; at least "
                             f"{MIN_SEEDS})")
    storage_option(parser)
    plugin_option(parser)
    json_option(parser, "print the confirmed ranking as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.api.comparisons import confirm_parsed

    quiet_optuna()
    name, ranking = confirm_parsed(args, to_stderr)
    if args.json:
        print_json(ranking)
        return 0
    from automl.report.tables import confirmed_table

    stdout().print(confirmed_table(ranking, name))
    return 0
