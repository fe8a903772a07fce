"""`automl new-trick NAME`: write a working trick plugin, its test, and the entry point that ships it."""

from __future__ import annotations

import argparse

from automl.cli.options import host, json_option, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the trick's name, snake_case (also the module's)")
    parser.add_argument("--dir", default=".", metavar="DIR", help="where to write NAME.py and test_NAME.py "
                                                                  "(default: here)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    json_option(parser, "print the files written and the entry point as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.authoring import new_trick

    created = new_trick(args.name, args.dir, installed=host([]).tricks, force=args.force)
    if args.json:
        print_json(created.as_dict())
        return 0
    print(f"wrote {created.module} and {created.test}\n"
          f"  try it:   automl plugins show {created.name} --plugin {created.module}\n"
          f"  test it:  python -m pytest {created.test}\n"
          f"  use it:   automl run STUDY.toml --plugin {created.module}  (with {created.name!r} in [tricks] include)\n"
          f"  ship it:  add to your package's pyproject.toml, with the module in your package:\n\n"
          f"{created.entry_point}")
    return 0
