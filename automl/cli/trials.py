"""`automl trials STUDY`: every trial of a study: state, value, tricks, device-seconds, why it ended."""

from __future__ import annotations

import argparse

from automl.cli.options import json_option, open_study_storage, print_json, stdout, storage_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study")
    storage_option(parser)
    json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.study.records import load_study, trial_record

    storage, shown = open_study_storage(args.storage)
    records = [trial_record(t) for t in load_study(args.study, storage, shown).get_trials(deepcopy=False)]
    if args.json:
        print_json(records)
    else:
        from automl.report.tables import trials_table

        stdout().print(trials_table(records, title=f"trials of {args.study}"))
    return 0
