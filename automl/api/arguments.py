"""A command's options from Python keywords, parsed by the command's own parser: one set of defaults and checks."""

from __future__ import annotations

import argparse
from typing import Any

from automl.errors import UserError


class _Refusing(argparse.ArgumentParser):
    """The command's parser, raising its complaint as a UserError where the command would print it and exit 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise UserError(message)


def command_args(command: str, positional: list[str], options: dict[str, Any]) -> argparse.Namespace:
    """``automl COMMAND POSITIONAL --option value ...`` as the command parses it, from ``options`` (Python names:
    ``n_trials=5`` is ``--n-trials 5``; ``True`` a flag; ``None`` left to the command's default). A value the
    command refuses is a :class:`UserError` naming the option, as the command would say it."""
    from automl.cli import COMMANDS

    module = __import__(f"automl.cli.{COMMANDS[command][0]}", fromlist=["add_arguments"])
    parser = _Refusing(prog=f"automl {command}", add_help=False)
    module.add_arguments(parser)
    known = {action.dest: action for action in parser._actions}
    argv = [str(p) for p in positional]
    for name, value in options.items():
        if value is None or value is False:
            continue
        if name not in known or not known[name].option_strings:
            raise TypeError(f"automl.{command}() got an unexpected keyword argument {name!r}")
        flag = known[name].option_strings[-1]
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):  # an option given many times (--plugin A --plugin B)
            argv.extend(f"{flag}={item}" for item in value)
        else:
            argv.append(f"{flag}={value}")
    args = parser.parse_args(argv)
    args.command = command
    return args


__all__ = ["command_args"]
