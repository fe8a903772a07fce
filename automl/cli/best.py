"""`automl best STUDY`: the best trials of a study, their parameters grouped by trick, and their tricks."""

from __future__ import annotations

import argparse

from automl.cli.options import (json_option, open_study, positive_int, print_best,
                                storage_option, study_argument)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study_argument(parser)
    parser.add_argument("--top", type=positive_int, default=1, metavar="K", help="the K best (default 1)")
    parser.add_argument("--confirmed", action="store_true",
                        help="the whole ranking `automl confirm` recorded (the best trials over paired seeds)")
    storage_option(parser)
    json_option(parser, "JSON: one object, or a list when --top is above 1")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.study.records import load_study

    name, storage, shown = open_study(args)
    study = load_study(name, storage, shown)
    if args.confirmed:
        return _confirmed(study, args)
    return print_best(study, shown, top=args.top, as_json=args.json)


def _confirmed(study, args: argparse.Namespace) -> int:
    from automl.cli.confirm import print_confirmed
    from automl.cli.options import print_json
    from automl.errors import UserError
    from automl.study.records import STUDY_CONFIRMED

    result = study.user_attrs.get(STUDY_CONFIRMED)
    if result is None:
        raise UserError(f"study {study.study_name!r} has no confirmed ranking; run `automl confirm` on its file first")
    if args.json:
        print_json(result)
    else:
        print_confirmed(result)
    return 0
