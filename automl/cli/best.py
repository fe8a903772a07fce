"""`automl best STUDY`: the best trials of a study, their parameters grouped by trick, and their tricks."""

from __future__ import annotations

import argparse

from automl.cli.options import (json_option, open_study, positive_int, print_best, print_json, stdout,
                                storage_option, study_argument)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study_argument(parser)
    parser.add_argument("--top", type=positive_int, default=1, metavar="K", help="the K best (default 1)")
    parser.add_argument("--confirmed", action="store_true",
                        help="the ranking `automl confirm` recorded: the best trials by their mean over paired seeds")
    storage_option(parser)
    json_option(parser, "JSON: one object, or a list when --top is above 1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.records import load_study

    name, storage, shown = open_study(args)
    study = load_study(name, storage, shown)
    if args.confirmed:
        return _print_confirmed(study, args)
    return print_best(study, shown, top=args.top, as_json=args.json)


def _print_confirmed(study, args: argparse.Namespace) -> int:
    from automl.errors import UserError
    from automl.records import STUDY_CONFIRMED

    ranking = study.user_attrs.get(STUDY_CONFIRMED)
    if ranking is None:
        raise UserError(f"study {study.study_name!r} has no confirmed ranking; run: automl confirm {args.study}")
    ranking = {**ranking, "ranking": ranking["ranking"][:args.top]}
    if args.json:
        print_json(ranking["ranking"][0] if args.top == 1 else ranking["ranking"])
        return 0
    from automl.report.tables import confirmed_table

    stdout().print(confirmed_table(ranking, study.study_name))
    return 0
