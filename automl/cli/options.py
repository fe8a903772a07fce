"""What the commands share: options defined once, the plugin host, the storage they read, how they print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any


def storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", metavar="URL",
                        help="database URL (default: $AUTOML_STORAGE, the study file's, sqlite:///automl.db)")


def plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH",
                        help="load a trick plugin from a Python file (repeatable)")


def json_option(parser: argparse.ArgumentParser, text: str = "print JSON instead of a table") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def host(plugin_paths: list[str]):
    """The plugin host, each plugin that failed to load told as a warning."""
    from automl.host import get_host

    found = get_host(plugin_paths)
    for failure in found.failures:
        print(f"automl: warning: {failure}", file=sys.stderr)
    return found


def open_study_storage(url: str | None):
    """The existing storage ``--storage`` (or the default) names, and its URL as it may be shown."""
    from automl.storage import mask_url, open_storage, resolve_url

    url = resolve_url(url)
    quiet_optuna()
    return open_storage(url, create=False), mask_url(url)


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def stdout():
    from rich.console import Console

    return Console()


def stderr():
    from rich.console import Console

    return Console(stderr=True)


def print_best(study: Any, shown_url: str, *, top: int, as_json: bool) -> int:
    """The ``top`` best trials of ``study``, as `automl best` and the end of `automl run` show them."""
    from automl.report.tables import best_lines
    from automl.storage import mask_url
    from automl.study.records import mark_ties, ranked, trial_record

    completed = [trial_record(t) for t in ranked(study.get_trials(deepcopy=False))]
    records = completed[:top]
    mark_ties(records, completed)
    if as_json:
        print_json(records[0] if top == 1 and records else records if records else None)
        return 0
    console = stdout()
    for line in best_lines(records, study.study_name):
        console.print(line, soft_wrap=isinstance(line, str))
    if records:
        console.print(f"storage: {mask_url(shown_url)}", soft_wrap=True)
    return 0
