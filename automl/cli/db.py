"""`automl db current|upgrade`: the revision of automl's own tables in a study database, and their migration."""

from __future__ import annotations

import argparse

from automl.cli.options import json_option, print_json, quiet_optuna, storage_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = commands.add_parser("upgrade", help="migrate automl's tables to this automl's revision, keeping rows")
    storage_option(upgrade)
    json_option(upgrade)
    upgrade.set_defaults(func=run_upgrade)
    current = commands.add_parser("current", help="the revision of automl's tables, and the one this automl needs")
    storage_option(current)
    json_option(current)
    current.set_defaults(func=run_current)


def run_upgrade(args: argparse.Namespace) -> int:
    from automl.storage import resolve_url
    from automl.storage.schema import upgrade

    quiet_optuna()
    before, after = upgrade(resolve_url(args.storage))
    if args.json:
        print_json({"storage": after.storage, "from": before.current, "to": after.current, "head": after.head})
    elif before.current == after.current:
        print(f"automl tables in {after.storage} are already at {after.current} (head)")
    else:
        print(f"automl tables in {after.storage}: {before.current or '(none)'} -> {after.current}")
    return 0


NOTES = {"empty": "no automl tables yet; `automl run` or `automl db upgrade` creates them",
         "current": "up to date",
         "old": "out of date; run: automl db upgrade --storage {storage}",
         "newer": "written by a newer automl; upgrade automl"}


def run_current(args: argparse.Namespace) -> int:
    from automl.storage import resolve_url
    from automl.storage.schema import status

    quiet_optuna()
    found = status(resolve_url(args.storage))
    if args.json:
        print_json(found.as_dict())
        return 0
    note = NOTES[found.state].format(storage=found.storage)
    print(f"{found.storage}: {found.current or '(none)'} (head {found.head}): {note}")
    return 0
