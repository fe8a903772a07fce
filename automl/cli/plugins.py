"""`automl plugins list|show`: the tricks, models and data sets the host found, their parameters, resources, hooks
and sources."""

from __future__ import annotations

import argparse

from automl.cli.options import host, json_option, plugin_option, print_json, stdout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="plugins_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="every trick with its parameters, every model and every data set")
    plugin_option(listing)
    json_option(listing)
    listing.set_defaults(func=run_list)
    show = commands.add_parser("show", help="one trick: parameters, ranges, owned resources, source")
    show.add_argument("name")
    plugin_option(show)
    json_option(show)
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    found = host(args.plugin, args.traceback)
    records = [info.describe() for info in sorted(found.tricks.values(), key=lambda i: i.name)]
    models = [info.describe() for _, info in sorted(found.models.items())]
    datasets = [found.datasets[name].describe() for name in sorted(found.datasets)]
    if args.json:
        failed = [{"plugin": f.plugin, "source": f.source, "reason": f.reason} for f in found.failures]
        print_json({"tricks": records, "models": models, "datasets": datasets, "failed": failed,
                    "blocked": found.blocked, "blocked_models": found.blocked_models,
                    "blocked_datasets": found.blocked_datasets, "warnings": found.warnings,
                    "families": {kind: [f.describe() for f in families.values()]
                                 for kind, families in found.families.items()},
                    "blocked_families": found.blocked_families})
    else:
        from automl.host import DATASET, MODEL
        from automl.report.tables import datasets_table, models_table, plugins_table

        stdout().print(plugins_table(records))
        stdout().print(models_table(models, found.forms(MODEL)))
        stdout().print(datasets_table(datasets, found.forms(DATASET)))
    return 0


def run_show(args: argparse.Namespace) -> int:
    record = host(args.plugin, args.traceback).trick(args.name).describe()
    if args.json:
        print_json(record)
        return 0
    from automl.report.tables import trick_lines

    console = stdout()
    for line in trick_lines(record):
        console.print(line, soft_wrap=True)
    return 0
