"""`automl export STUDY`: one completed trial (default: the best) as a standalone run file."""

from __future__ import annotations

import argparse

from automl.cli.options import (host, json_option, plugin_option, print_json, quiet_optuna,
                                storage_option, study_argument, study_location)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study_argument(parser)
    parser.add_argument("--trial", type=int, metavar="N", help="the trial to export (default: the best)")
    parser.add_argument("-o", "--out", metavar="RUN.toml", help="the run file (default: STUDY-trialN.toml)")
    storage_option(parser)
    plugin_option(parser)
    json_option(parser, "print what was written as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.study.export import export_trial

    quiet_optuna()
    name, url, _ = study_location(args)
    exported = export_trial(url, name, args.trial, host(args.plugin, args.traceback), args.out)
    if args.json:
        print_json(exported.as_dict())
    else:
        print(f"wrote {exported.path}: trial {exported.trial} of {exported.study}, validation error "
              f"{exported.value:.4f}, tricks: {', '.join(exported.tricks) or '(none)'}; "
              f"train it with: automl train {exported.path}")
    return 0
