"""What the commands share: options defined once, the plugin host, the storage they read, how they print."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Callable


def storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", metavar="URL",
                        help="database URL (default: $AUTOML_STORAGE, the study file's, sqlite:///automl.db)")


def plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH",
                        help="load a trick plugin from a Python file or a package folder (repeatable)")
    parser.add_argument("--traceback", action="store_true", default=None,
                        help="show the traceback of a plugin that fails to load (or set AUTOML_TRACEBACK=1)")


def json_option(parser: argparse.ArgumentParser, text: str = "print JSON instead of a table") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def host(plugin_paths: list[str], traceback: bool | None = None, say: Callable[[str], None] | None = None):
    """The plugin host, each plugin that failed to load, each blocked trick name and each near miss of a hook
    told as a warning (on stderr, or to ``say``); with ``traceback`` (default: ``AUTOML_TRACEBACK=1``) a failure's
    traceback too."""
    from automl.host import get_host, use_host

    found = get_host(plugin_paths)
    use_host(found)  # a model named in a study may come from a --plugin path too
    if traceback is None:
        traceback = os.environ.get("AUTOML_TRACEBACK", "") not in ("", "0")
    say = say or to_stderr
    for failure in found.failures:
        say(f"automl: warning: {failure}")
        if traceback and failure.traceback:
            say(failure.traceback.rstrip("\n"))
    clashes = [found.blocked[name] for name, infos in sorted(found.providers.items()) if len(infos) > 1]
    for reason in clashes:
        say(f"automl: warning: {reason}; the studies and commands that use it stop until then")
    for warning in found.warnings:
        say(f"automl: warning: {warning}")
    return found


def study_argument(parser: argparse.ArgumentParser) -> None:
    """The study a query reads: its name, or its study file, whose [study] name and storage are then used."""
    parser.add_argument("study", metavar="STUDY", help="the study's name, or its file (STUDY.toml): then the file's "
                                                       "[study] name, in the storage the file names")
    parser.add_argument("--variant", metavar="NAME", help="with a study file: the variant it ran as (e.g. cifar10)")


def study_location(args: argparse.Namespace) -> tuple[str, str, bool]:
    """(study name, storage URL, whether a study file gave them) for ``study_argument``'s STUDY: a file's
    storage is used as `automl run` uses it (``--storage``, then ``AUTOML_STORAGE``, then the file's)."""
    from pathlib import Path

    from automl.errors import UserError
    from automl.storage import resolve_url
    from automl.study.config import load_study_file

    if args.study.endswith(".toml") or Path(args.study).is_file():
        config = load_study_file(args.study, args.variant).config
        return config.study.name, resolve_url(args.storage, config.study.storage), True
    if args.variant is not None:
        raise UserError(f"--variant {args.variant} needs a study file in place of the study name {args.study!r}")
    return args.study, resolve_url(args.storage), False


def worker_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--workers N``, and the hidden options a parent hands each of its worker processes."""
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N; with --workers a list, e.g. "
                                         "cuda:0,cuda:1, handed out to the workers in turn")
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                        help="worker processes on this machine (default 1); more than one needs PostgreSQL")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # this child's index among --workers N
    parser.add_argument("--session", type=int, help=argparse.SUPPRESS)  # its parent's session of the study
    threads_option(parser)


def gpus_option(parser: argparse.ArgumentParser) -> None:
    """``--gpus-per-trial K``: the devices, one process each, that train each trial (or cell) together."""
    parser.add_argument("--gpus-per-trial", type=int, metavar="K",
                        help="train each trial on K devices at once, one process each (default: [study] "
                             "gpus_per_trial, 1); with --device cpu, K gloo processes on the CPU")


def threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: the CPU threads torch may use (with ``--workers``, split between them)."""
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads torch may use (default: OMP_NUM_THREADS, else the cores this process may "
                             "run on); --workers and the ranks of a trial split them")


def warn_if_overloaded(device, budgets, say: Callable[[str], None] | None = None) -> None:
    """Say once (on stderr, or to ``say``), on a CPU, when the machine is already busier than its cores before
    training starts and a budget is in seconds (a budget in steps or epochs buys the same training however busy
    the machine is)."""
    from automl.threads import overload_warning

    timed = any(budget.is_time for budget in budgets)
    warning = overload_warning() if device.type == "cpu" and timed else None
    if warning:
        (say or to_stderr)(f"automl: warning: {warning}")


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def ignore(*_: Any) -> None:
    """Where what a command would say goes when nothing is to be printed (the Python API's default)."""


def open_study(args: argparse.Namespace):
    """(study name, storage, URL as it may be shown) of ``study_argument``'s STUDY; the storage must exist."""
    from automl.errors import UserError

    name, url, from_file = study_location(args)
    try:
        storage, shown = open_study_storage(url)
    except UserError as exc:
        if from_file or not str(exc).startswith("no database"):
            raise
        raise UserError(f"{exc}; or give the study's file in place of its name, to use the storage it names") from None
    return name, storage, shown


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


PIPE_WIDTH = 10_000
"""The width of output written to a pipe or a file, unless ``COLUMNS`` says otherwise: wider than any table, so
that every value is kept whole (rich would assume 80 columns and cut a wide table's cells to "0.255…"); a table
is as wide as its values, not as this."""


def stdout():
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=PIPE_WIDTH)
    return console


def stderr():
    from rich.console import Console

    return Console(stderr=True)


def _print_front(study: Any, shown_url: str, *, as_json: bool) -> int:
    """A study of several objectives has no one best: its Pareto front, lowest error first (JSON: a list)."""
    from automl.report.tables import front_lines
    from automl.storage import mask_url
    from automl.study.pareto import front_records

    front = front_records(study)
    if as_json:
        print_json(front)
        return 0
    return _print_lines(front_lines(front, study.study_name), mask_url(shown_url) if front else None)


def _print_lines(lines: list[Any], storage: str | None) -> int:
    """What `automl best` prints: its lines (text, or tables), then where the study is, if given."""
    console = stdout()
    for line in lines:
        console.print(line, soft_wrap=isinstance(line, str))
    if storage is not None:
        console.print(f"storage: {storage}", soft_wrap=True)
    return 0


def print_best(study: Any, shown_url: str, *, top: int, as_json: bool) -> int:
    """The ``top`` best configurations of ``study`` by their mean over seeds (``automl.study.incumbent``), each
    as the record of its first trial with its seeds, mean and interval; as `automl best` and the end of
    `automl run` show them."""
    from automl.report.tables import best_lines
    from automl.storage import mask_url
    from automl.records import mark_ties
    from automl.study.incumbent import ranked_records

    if len(study.directions) > 1:
        return _print_front(study, shown_url, as_json=as_json)
    completed = ranked_records(study.get_trials(deepcopy=False))
    records = completed[:top]
    mark_ties(records, completed, interval="mean_ci")
    if as_json:
        print_json(records[0] if top == 1 and records else records if records else None)
        return 0
    return _print_lines(best_lines(records, study.study_name), mask_url(shown_url) if records else None)
