"""The ``automl`` command: run studies, list plugins, and query studies from their database."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

from automl.errors import UserError

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``automl`` and ``python -m automl``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"automl: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("automl: interrupted; run the same command again to resume the study", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run (or resume) a tuning study from a TOML file")
    run.add_argument("study_file", metavar="STUDY.toml")
    run.add_argument("--variant", metavar="NAME", help="apply the file's [variants.NAME] table (e.g. cifar10)")
    _storage_arg(run)
    run.add_argument("--study-name", help="name in the database (default: [study] name)")
    run.add_argument("--n-trials", type=_positive_int, help="stop after this many trials in the study")
    run.add_argument("--total-budget", metavar="DUR", help="device time of the whole study, e.g. 10m")
    run.add_argument("--trial-budget", metavar="DUR", help="budget of one trial: 90s, 5m, 30ep, 500steps")
    run.add_argument("--device", help="auto (default), cpu, cuda, cuda:N; with --workers a list, e.g. cuda:0,cuda:1, "
                                      "handed out to the workers in turn")
    run.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                     help="worker processes on this machine (default 1); more than one needs PostgreSQL")
    run.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # this child's index among --workers N
    run.add_argument("--threads", type=_positive_int, help=argparse.SUPPRESS)
    run.add_argument("--seed", type=int, help="sampler and training seed (default: [study] seed)")
    _plugin_arg(run)
    _json_arg(run, "print the best trial as JSON at the end")
    run.set_defaults(func=_cmd_run)

    plugins = commands.add_parser("plugins", help="the trick plugins automl found")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", required=True, metavar="COMMAND")
    listing = plugin_commands.add_parser("list", help="every trick with its parameters")
    _plugin_arg(listing)
    _json_arg(listing)
    listing.set_defaults(func=_cmd_plugins_list)
    show = plugin_commands.add_parser("show", help="one trick: parameters, ranges, owned resources, source")
    show.add_argument("name")
    _plugin_arg(show)
    _json_arg(show)
    show.set_defaults(func=_cmd_plugins_show)

    studies = commands.add_parser("studies", help="the studies in a database")
    _storage_arg(studies)
    _json_arg(studies)
    studies.set_defaults(func=_cmd_studies)

    trials = commands.add_parser("trials", help="every trial of a study")
    trials.add_argument("study")
    _storage_arg(trials)
    _json_arg(trials)
    trials.set_defaults(func=_cmd_trials)

    best = commands.add_parser("best", help="the best trials of a study and their configuration")
    best.add_argument("study")
    best.add_argument("--top", type=_positive_int, default=1, metavar="K", help="the K best (default 1)")
    _storage_arg(best)
    _json_arg(best, "JSON: one object, or a list when --top is above 1")
    best.set_defaults(func=_cmd_best)

    report = commands.add_parser("report", help="one self-contained HTML page on a study: history, budget, "
                                                "importances, trick table")
    report.add_argument("study")
    report.add_argument("-o", "--output", metavar="FILE",
                        help="the HTML file (default report.html; none when only --png is given)")
    report.add_argument("--png", metavar="DIR", help="write each figure as DIR/<name>.png")
    _storage_arg(report)
    _json_arg(report, "print the paths written as JSON")
    report.set_defaults(func=_cmd_report)

    export = commands.add_parser("export", help="one trial of a study as a standalone run file for `automl train`")
    export.add_argument("study")
    export.add_argument("--trial", type=int, metavar="N", help="the trial to export (default: the best)")
    export.add_argument("-o", "--out", metavar="RUN.toml", help="the run file (default: STUDY-trialN.toml)")
    _storage_arg(export)
    _plugin_arg(export)
    _json_arg(export, "print what was written as JSON")
    export.set_defaults(func=_cmd_export)

    train = commands.add_parser("train", help="train an exported trial over seeds; validation and test error")
    train.add_argument("run_file", metavar="RUN.toml")
    train.add_argument("--budget", metavar="DUR", help="instead of the trial's budget: 90s, 5m, 30ep, 500steps")
    train.add_argument("--seeds", type=_positive_int, default=1, metavar="K",
                       help="train K times, seeds from the trial's own upwards (default 1)")
    train.add_argument("-o", "--out", metavar="DIR", help="folder of the models (default: beside the run file)")
    train.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    _plugin_arg(train)
    _json_arg(train, "print every seed's errors, the mean and spread, and what was trained as JSON")
    train.set_defaults(func=_cmd_train)

    new_trick = commands.add_parser("new-trick", help="write a working trick plugin, its test, and its entry point")
    new_trick.add_argument("name", help="the trick's name, snake_case (also the module's)")
    new_trick.add_argument("--dir", default=".", metavar="DIR", help="where to write NAME.py and test_NAME.py "
                                                                     "(default: here)")
    new_trick.add_argument("--force", action="store_true", help="overwrite files that exist")
    _json_arg(new_trick, "print the files written and the entry point as JSON")
    new_trick.set_defaults(func=_cmd_new_trick)

    db = commands.add_parser("db", help="automl's own tables in the study database: revision and upgrade")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="migrate automl's tables to this automl's revision, keeping rows")
    _storage_arg(upgrade)
    _json_arg(upgrade)
    upgrade.set_defaults(func=_cmd_db_upgrade)
    current = db_commands.add_parser("current", help="the revision of automl's tables, and the one this automl needs")
    _storage_arg(current)
    _json_arg(current)
    current.set_defaults(func=_cmd_db_current)
    return parser


def _storage_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", metavar="URL",
                        help="database URL (default: $AUTOML_STORAGE, the study file's, sqlite:///automl.db)")


def _plugin_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH",
                        help="load a trick plugin from a Python file (repeatable)")


def _json_arg(parser: argparse.ArgumentParser, text: str = "print JSON instead of a table") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# -------------------------------------------------------------------------------------
# Commands
# -------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from automl.storage import resolve_url
    from automl.study.config import load_study_file
    from automl.study.progress import RunDisplay
    from automl.study.runner import Overrides, create_study, prepare, resolve_device, run_study
    from automl.study.workers import check_workers, split_devices, start_workers, watch

    study_file = load_study_file(args.study_file, args.variant)
    url = resolve_url(args.storage, study_file.config.study.storage)
    check_workers(args.workers, url)
    devices = split_devices(args.device, args.workers)
    host = _host(args.plugin)
    prepared = prepare(study_file, host, Overrides(
        storage=url, study_name=args.study_name, n_trials=args.n_trials,
        total_budget=args.total_budget, trial_budget=args.trial_budget, device=devices[0], seed=args.seed),
        data_on_cpu=args.workers > 1 and args.worker is None)
    for device in set(devices[1:]):
        resolve_device(device)
    if args.threads and prepared.device.type == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    _quiet_optuna()
    if args.worker is not None:
        prepared.sampler_seed = prepared.seed + 7919 * (args.worker + 1)  # workers sample different points
    study = create_study(prepared)
    if args.worker is not None:
        run_study(prepared, study)
        return 0
    with RunDisplay(prepared, _stderr()) as display:
        if args.workers > 1:
            workers = start_workers(_worker_argv(args), url, devices)
            failed = watch(study, workers, display.on_trial)
        else:
            study = run_study(prepared, study, on_trial=display.on_trial)
            failed = 0
    if failed:
        print(f"automl: error: a worker exited with status {failed}; its error is above", file=sys.stderr)
        return 1
    return _print_best(study, prepared.storage_url, top=1, as_json=args.json)


def _worker_argv(args: argparse.Namespace) -> list[str]:
    """The parent's own options, for its workers (storage and device are handed over apart)."""
    argv = [args.study_file]
    for flag, value in (("--variant", args.variant), ("--study-name", args.study_name),
                        ("--n-trials", args.n_trials), ("--total-budget", args.total_budget),
                        ("--trial-budget", args.trial_budget), ("--seed", args.seed)):
        if value is not None:
            argv += [flag, str(value)]
    for path in args.plugin:
        argv += ["--plugin", path]
    return argv


def _cmd_plugins_list(args: argparse.Namespace) -> int:
    host = _host(args.plugin)
    records = [_trick_record(info) for info in sorted(host.tricks.values(), key=lambda i: i.name)]
    if args.json:
        failed = [{"plugin": f.plugin, "source": f.source, "reason": f.reason} for f in host.failures]
        _print_json({"tricks": records, "failed": failed})
    else:
        from automl.report.tables import plugins_table

        _stdout().print(plugins_table(records))
    return 0


def _cmd_plugins_show(args: argparse.Namespace) -> int:
    host = _host(args.plugin)
    record = _trick_record(host.trick(args.name))
    if args.json:
        _print_json(record)
        return 0
    console = _stdout()
    console.print(f"[bold]{record['name']}[/bold]  ({record['source']})")
    if record["doc"]:
        console.print(record["doc"])
    console.print(f"owns: {', '.join(record['owns']) or '-'}")
    console.print(f"hooks: {', '.join(record['hooks']) or '-'}")
    console.print("parameters:" if record["params"] else "parameters: -")
    for name, space in record["params"].items():
        console.print(f"  {record['name']}.{name}  {space['text']}")
    if record["options"]:
        console.print("options (set in the study file, never searched): "
                      + ", ".join(f"{k} = {v!r}" for k, v in record["options"].items()), soft_wrap=True)
    return 0


def _cmd_studies(args: argparse.Namespace) -> int:
    import optuna

    from automl.study.records import study_record

    storage, _ = _open(args.storage)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=True)
    records = [study_record(s, storage) for s in sorted(summaries, key=lambda s: s.study_name)]
    if args.json:
        _print_json(records)
    else:
        from automl.report.tables import studies_table

        _stdout().print(studies_table(records))
    return 0


def _cmd_trials(args: argparse.Namespace) -> int:
    from automl.study.records import load_study, trial_record

    storage, shown = _open(args.storage)
    study = load_study(args.study, storage, shown)
    records = [trial_record(t) for t in study.get_trials(deepcopy=False)]
    if args.json:
        _print_json(records)
    else:
        from automl.report.tables import trials_table

        _stdout().print(trials_table(records, title=f"trials of {args.study}"))
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    from automl.study.records import load_study

    storage, shown = _open(args.storage)
    return _print_best(load_study(args.study, storage, shown), shown, top=args.top, as_json=args.json)


def _cmd_report(args: argparse.Namespace) -> int:
    from automl.report.study_report import build_report, output_paths, write_report
    from automl.study.records import load_study

    html, png_dir = output_paths(args.output, args.png)
    storage, shown = _open(args.storage)
    report = build_report(load_study(args.study, storage, shown), storage.engine, shown)
    written = write_report(report, html, png_dir)
    if args.json:
        _print_json({"html": str(html) if html else None, "png": [str(p) for p in written if p != html],
                     "not_drawn": {f.name: f.note for f in report.figures if f.png is None}})
        return 0
    for path in written:
        print(path)
    for figure in report.figures:
        if figure.png is None:
            print(f"not drawn: {figure.name} ({figure.note})", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from automl.storage import resolve_url
    from automl.study.export import export_trial

    _quiet_optuna()
    exported = export_trial(resolve_url(args.storage), args.study, args.trial, _host(args.plugin), args.out)
    if args.json:
        _print_json(exported.as_dict())
    else:
        print(f"wrote {exported.path}: trial {exported.trial} of {exported.study}, validation error "
              f"{exported.value:.4f}, tricks: {', '.join(exported.tricks) or '(none)'}; "
              f"train it with: automl train {exported.path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from automl.errors import TrialFailed
    from automl.study.standalone import SeedProgress, prepare_run, record, results_table, train_seeds

    host = _host(args.plugin)
    prepared = prepare_run(args.run_file, host, seeds=args.seeds, budget=args.budget, device=args.device,
                           out_dir=args.out)
    for warning in prepared.replayed.warnings:
        print(f"automl: warning: {warning}", file=sys.stderr)
    try:
        with SeedProgress(prepared.seeds, _stderr()) as progress:
            runs = train_seeds(prepared, host, on_step=progress)
    except TrialFailed as exc:
        print(f"automl: error: training failed: {exc}", file=sys.stderr)
        return 1
    data = record(prepared, runs)
    if args.json:
        _print_json(data)
    else:
        console = _stdout()
        console.print(results_table(data))
        was = "" if data["trial_value"] is None else f"; the trial's validation error was {data['trial_value']:.4f}"
        console.print(f"tricks: {', '.join(data['tricks']) or '(none)'}{was}", soft_wrap=True)
    return 0


def _cmd_new_trick(args: argparse.Namespace) -> int:
    from automl.authoring import new_trick

    created = new_trick(args.name, args.dir, installed=_host([]).tricks, force=args.force)
    if args.json:
        _print_json(created.as_dict())
        return 0
    print(f"wrote {created.module} and {created.test}\n"
          f"  try it:   automl plugins show {created.name} --plugin {created.module}\n"
          f"  test it:  python -m pytest {created.test}\n"
          f"  use it:   automl run STUDY.toml --plugin {created.module}  (with {created.name!r} in [tricks] include)\n"
          f"  ship it:  add to your package's pyproject.toml, with the module in your package:\n\n"
          f"{created.entry_point}")
    return 0


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from automl.storage import resolve_url
    from automl.storage.schema import upgrade

    _quiet_optuna()
    before, after = upgrade(resolve_url(args.storage))
    if args.json:
        _print_json({"storage": after.storage, "from": before.current, "to": after.current, "head": after.head})
    elif before.current == after.current:
        print(f"automl tables in {after.storage} are already at {after.current} (head)")
    else:
        print(f"automl tables in {after.storage}: {before.current or '(none)'} -> {after.current}")
    return 0


def _cmd_db_current(args: argparse.Namespace) -> int:
    from automl.storage import resolve_url
    from automl.storage.schema import status

    _quiet_optuna()
    found = status(resolve_url(args.storage))
    if args.json:
        _print_json(found.as_dict())
        return 0
    notes = {"empty": "no automl tables yet; `automl run` or `automl db upgrade` creates them",
             "current": "up to date",
             "old": f"out of date; run: automl db upgrade --storage {found.storage}",
             "newer": "written by a newer automl; upgrade automl"}
    print(f"{found.storage}: {found.current or '(none)'} (head {found.head}): {notes[found.state]}")
    return 0


def _print_best(study: Any, shown_url: str, *, top: int, as_json: bool) -> int:
    from automl.report.tables import params_table
    from automl.storage import mask_url
    from automl.study.records import best_trials, trial_record, trick_params

    records = [trial_record(t) for t in best_trials(study, top)]
    if as_json:
        _print_json(records[0] if top == 1 and records else records if records else None)
        return 0
    console = _stdout()
    if not records:
        console.print(f"study {study.study_name!r} has no completed trial yet")
        return 0
    for rank, record in enumerate(records, 1):
        cost = record["user_attrs"].get("inference_cost", 1)
        console.print(f"#{rank}: trial {record['number']} of {study.study_name}: validation error "
                      f"{record['value']:.4f} in {record['spent_seconds']}s"
                      + (f", {cost} forward passes per prediction" if cost != 1 else ""), soft_wrap=True)
        console.print(params_table(trick_params(record)))
        console.print(f"tricks: {', '.join(record['tricks']) or '(none)'}", soft_wrap=True)
    console.print(f"storage: {mask_url(shown_url)}", soft_wrap=True)
    return 0


# -------------------------------------------------------------------------------------
# Helpers
# -------------------------------------------------------------------------------------


def _host(plugin_paths: list[str]):
    from automl.host import get_host

    host = get_host(plugin_paths)
    for failure in host.failures:
        print(f"automl: warning: {failure}", file=sys.stderr)
    return host


def _trick_record(info) -> dict[str, Any]:
    from automl.space import SpaceRecorder, to_json

    import inspect

    from automl.space import option_names
    from automl.trick import HOOKS, Trick

    recorder = SpaceRecorder(info.name)
    returned = info.cls.search_space(recorder)
    signature = inspect.signature(info.cls.__init__).parameters
    options = {name: signature[name].default for name in option_names(info.cls, returned)}
    doc = (info.cls.__doc__ or sys.modules[info.cls.__module__].__doc__ or "").strip().splitlines()
    # The hooks the trainer will call: a misspelt hook is not among them, and is never called.
    hooks = [hook for hook in HOOKS if getattr(info.cls, hook) is not getattr(Trick, hook)]
    return {"name": info.name, "owns": list(info.cls.owns), "hooks": hooks, "plugin": info.plugin,
            "source": info.source,
            "params": {name: to_json(dist) for name, dist in recorder.params.items()},
            "options": {name: None if value is inspect.Parameter.empty else value for name, value in options.items()},
            "doc": doc[0] if doc else ""}


def _open(url: str | None):
    from automl.storage import mask_url, open_storage, resolve_url

    url = resolve_url(url)
    _quiet_optuna()
    return open_storage(url, create=False), mask_url(url)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _stdout():
    from rich.console import Console

    return Console()


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


def _version() -> str:
    from automl import __version__

    return __version__
