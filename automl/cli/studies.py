"""`automl studies`: the studies in a database, with their trial counts, best value and device time."""

from __future__ import annotations

import argparse

from automl.cli.options import json_option, open_study_storage, print_json, stdout, storage_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    storage_option(parser)
    json_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import optuna

    from automl.records import study_record

    storage, _ = open_study_storage(args.storage)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    records = [study_record(s, storage) for s in sorted(summaries, key=lambda s: s.study_name)]
    if args.json:
        print_json(records)
    else:
        from automl.report.tables import studies_table

        stdout().print(studies_table(records))
    return 0
