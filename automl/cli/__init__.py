"""The ``automl`` command: run studies, list plugins, and query studies from their database."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from automl.errors import UserError

# Each command: its module in this package and the one-line summary `automl --help` lists (pip's commands/).
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run (or resume) a tuning study from a TOML file"),
    "plugins": ("plugins", "the trick plugins automl found"),
    "studies": ("studies", "the studies in a database"),
    "trials": ("trials", "every trial of a study"),
    "best": ("best", "the best trials of a study and their configuration"),
    "report": ("report", "one self-contained HTML page on a study: history, budget, importances, trick table"),
    "export": ("export", "one trial of a study as a standalone run file for `automl train`"),
    "compare": ("compare", "train a study's fixed recipes over paired seeds at several budgets, and test them"),
    "train": ("train", "train an exported trial over seeds; validation and test error"),
    "confirm": ("confirm", "train the best trials again at paired seeds and rank them by their mean"),
    "new-trick": ("new_trick", "write a working trick plugin, its test, and its entry point"),
    "db": ("db", "automl's own tables in the study database: revision and upgrade"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``automl`` and ``python -m automl``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"automl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        from automl.interrupts import exit_code, signal_name

        print(f"automl: interrupted by {signal_name(exc)}; run the same command again to resume "
              "(a study retries its interrupted trials)", file=sys.stderr)
        return exit_code(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        command = commands.add_parser(name, help=summary)
        importlib.import_module(f"{__name__}.{module}").add_arguments(command)
    return parser


def _version() -> str:
    from automl.version import __version__

    return __version__


__all__ = ["COMMANDS", "build_parser", "main"]
