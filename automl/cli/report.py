"""`automl report STUDY`: one self-contained HTML page on a study or on its comparison, and its figures as PNGs."""

from __future__ import annotations

import argparse
import sys

from automl.cli.options import json_option, open_study, print_json, storage_option, study_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    study_argument(parser)
    output_options(parser)
    parser.add_argument("--comparison", action="store_true",
                        help="report the study's comparison (automl compare) rather than its tuning; implied when "
                             "STUDY is one of the comparison's budget studies")
    storage_option(parser)
    json_option(parser, "print the paths written as JSON")
    parser.set_defaults(func=run)


def output_options(parser: argparse.ArgumentParser) -> None:
    """``-o FILE`` and ``--png DIR``, shared with `automl compare`."""
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="the HTML file (default report.html; none when only --png is given)")
    parser.add_argument("--png", metavar="DIR", help="write each figure as DIR/<name>.png")


def run(args: argparse.Namespace) -> int:
    from automl.report.study_report import build_report, output_paths
    from automl.records import load_study
    from automl.study.analysis import stored_comparison
    from automl.study.cells import is_comparison

    html, png_dir = output_paths(args.output, args.png)
    name, storage, shown = open_study(args)
    if args.comparison or is_comparison(storage, name):
        from automl.report.comparison_report import build_comparison_report

        report = build_comparison_report(stored_comparison(storage, name), shown)
    else:
        report = build_report(load_study(name, storage, shown), storage.engine, shown)
    return write(report, html, png_dir, args.json)


def write(report, html, png_dir, as_json: bool) -> int:
    """Write the report's files, then say their paths (and the figures not drawn, with why)."""
    from automl.report.study_report import write_report

    written = write_report(report, html, png_dir)
    if as_json:
        print_json({"html": str(html) if html else None, "png": [str(p) for p in written if p != html],
                    "not_drawn": {f.name: f.note for f in report.figures if f.png is None}})
        return 0
    for path in written:
        print(path)
    for figure in report.figures:
        if figure.png is None:
            print(f"not drawn: {figure.name} ({figure.note})", file=sys.stderr)
    return 0
