"""`automl trials STUDY`: every trial of a study: state, value, tricks, device-seconds, why it ended."""

from __future__ import annotations

import argparse

from automl.cli.options import json_option, open_study, print_json, stdout, storage_option, study_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study_argument(parser)
    storage_option(parser)
    json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.records import load_study, trial_record

    name, storage, shown = open_study(args)
    records = [trial_record(t) for t in load_study(name, storage, shown).get_trials(deepcopy=False)]
    if args.json:
        print_json(records)
    else:
        from automl.report.tables import trials_table

        stdout().print(trials_table(records, title=f"trials of {name}"))
    return 0
