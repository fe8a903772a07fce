"""`automl best STUDY`: the best trials of a study, their parameters grouped by trick, and their tricks."""

from __future__ import annotations

import argparse

from automl.cli.options import (json_option, open_study, positive_int, print_best,
                                storage_option, study_argument)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study_argument(parser)
    parser.add_argument("--top", type=positive_int, default=1, metavar="K", help="the K best (default 1)")
    storage_option(parser)
    json_option(parser, "JSON: one object, or a list when --top is above 1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.study.records import load_study

    name, storage, shown = open_study(args)
    return print_best(load_study(name, storage, shown), shown, top=args.top, as_json=args.json)
