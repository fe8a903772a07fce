"""`automl compare STUDY.toml`: train the study's fixed recipes at each budget over paired seeds, and compare them."""

from __future__ import annotations

import argparse
from typing import Any

from automl.cli.options import (host, json_option, plugin_option, positive_int, print_json, quiet_optuna, stderr,
                                stdout, storage_option, worker_options)
from automl.cli.report import output_options
from automl.seeds import DEFAULT_SEEDS, MIN_SEEDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_file", metavar="STUDY.toml")
    parser.add_argument("--variant", metavar="NAME", help="apply the file's [variants.NAME] table (e.g. cifar10)")
    storage_option(parser)
    parser.add_argument("--seeds", type=positive_int, default=DEFAULT_SEEDS, metavar="N",
                        help=f"paired seeds per arm and budget, at least {MIN_SEEDS} (default {DEFAULT_SEEDS}): seed s "
                             "gives every arm the same initial weights and data order")
    parser.add_argument("--budgets", metavar="B1,B2,...",
                        help="trial budgets to compare at, in order, e.g. 10s,20s,40s (default: the study's)")
    parser.add_argument("--reference", metavar="ARM",
                        help="the arm the others are tested against (default: [compare] reference, else the arm "
                             "with the fewest tricks, 'plain' where there is one)")
    worker_options(parser)
    parser.add_argument("--n-trials", type=int, help=argparse.SUPPRESS)  # the trials its parent bounded it to
    output_options(parser)
    plugin_option(parser)
    json_option(parser, "print the comparison as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automl.interrupts import stop_on_signals

    with stop_on_signals():  # SIGTERM stops a comparison as Ctrl-C does; the next run trains the missing cells
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import sys

    from automl.study.analysis import comparison
    from automl.study.cells import completed_cells, run_budget
    from automl.study.processes import worker_failure

    outputs = _outputs(args)
    prepared, arms, reference, budgets, url = _prepare(args)
    if args.worker is not None:
        return _run_worker(args, prepared, budgets)
    per_budget = []
    with _Progress() as progress:
        for budget in budgets:
            if args.workers > 1:
                study, status = _with_workers(args, prepared, arms, reference, budget, url, progress)
                if status:
                    print(f"automl: error: {worker_failure(status)}", file=sys.stderr)
                    return 1
            else:
                study = run_budget(prepared, arms, reference, budget, args.seeds, on_queued=progress.add,
                                   on_trial=progress.done)
            per_budget.append((budget, completed_cells(study, args.seeds)))
    _warn_missing(per_budget, arms, args.seeds)
    result = comparison(prepared.name, arms, reference, args.seeds, per_budget)
    if args.json:
        print_json(result)
    else:
        _print(result)
    if outputs is not None:
        _write_report(result, url, *outputs)
    return 0


def _outputs(args: argparse.Namespace):
    """(HTML file, PNG folder) of ``-o`` / ``--png``, checked before any cell is trained; None without either."""
    from automl.report.study_report import output_paths

    if args.output is None and args.png is None:
        return None
    return output_paths(args.output, args.png)


def _write_report(result: dict[str, Any], url: str, html, png_dir) -> None:
    """The comparison's report (as `automl report` on it writes it); its paths on stderr, stdout may be JSON."""
    import sys

    from automl.report.comparison_report import build_comparison_report
    from automl.report.study_report import write_report
    from automl.storage import mask_url

    for path in write_report(build_comparison_report(result, mask_url(url)), html, png_dir):
        print(f"wrote {path}", file=sys.stderr)


def _with_workers(args: argparse.Namespace, prepared, arms, reference, budget, url: str, progress: "_Progress"):
    """One budget's missing cells, queued here and trained by ``--workers N`` processes; (study, exit status)."""
    from automl.study.cells import budget_study, queue_budget
    from automl.study.processes import split_devices, start_workers, watch

    cells, study = budget_study(prepared, budget)
    waiting = queue_budget(cells, study, arms, reference, args.seeds)
    progress.add(waiting)
    if not waiting:
        return study, 0
    argv = [args.study_file, "--session", str(cells.session), "--budgets", str(budget), "--seeds", str(args.seeds),
            "--n-trials", str(cells.n_trials), *(["--variant", args.variant] if args.variant else []),
            *[f"--plugin={path}" for path in args.plugin], *(["--traceback"] if args.traceback else [])]
    workers = start_workers(argv, url, split_devices(args.device, args.workers), command="compare")
    return study, watch(study, workers, progress.done)


def _run_worker(args: argparse.Namespace, prepared, budgets) -> int:
    """One of ``--workers N``, on one budget's study its parent queued: stops with its parent; an interruption
    is its parent's to report."""
    import os

    from automl.errors import UserError
    from automl.interrupts import PARENT_PID_VAR, exit_code, stop_with_parent
    from automl.study.cells import budget_study
    from automl.study.runner import run_study

    if args.session is None or args.n_trials is None or len(budgets) != 1:
        raise UserError("--worker is for the processes `automl compare --workers N` starts")
    stop_with_parent(int(os.environ.get(PARENT_PID_VAR, os.getppid())))
    cells, study = budget_study(prepared, budgets[0], session=args.session, worker=args.worker)
    cells.n_trials = args.n_trials
    try:
        run_study(cells, study)
    except KeyboardInterrupt as exc:
        return exit_code(exc)
    return 0


def _prepare(args: argparse.Namespace):
    """Everything checked before anything is written: the file, its recipes, the reference, budgets, seeds."""
    from automl.devices import resolve_device
    from automl.storage import resolve_url
    from automl.study.arms import check_seeds, parse_budgets, pick_reference, study_arms
    from automl.study.cells import check_recipes
    from automl.study.config import load_study_file
    from automl.study.processes import check_workers, split_devices
    from automl.study.runner import Overrides, prepare

    check_seeds(args.seeds)
    study_file = load_study_file(args.study_file, args.variant)
    budgets = parse_budgets(args.budgets, study_file.config.study.trial_budget)
    url = resolve_url(args.storage, study_file.config.study.storage)
    check_workers(args.workers, url)
    devices = split_devices(args.device, args.workers)
    prepared = prepare(study_file, host(args.plugin, args.traceback), Overrides(storage=url, device=devices[0]),
                       data_on_cpu=args.workers > 1 and args.worker is None)
    for device in set(devices[1:]):
        resolve_device(device)
    if args.threads and prepared.device.type == "cpu":
        import torch

        torch.set_num_threads(args.threads)
    arms = study_arms(prepared)
    in_file = study_file.config.compare.reference
    reference = pick_reference(arms, args.reference or in_file,
                                       "--reference" if args.reference or not in_file else "[compare] reference")
    check_recipes(prepared, arms, budgets)
    quiet_optuna()
    return prepared, arms, reference, budgets, url


def _warn_missing(per_budget, arms, seeds: int) -> None:
    """Cells without a result are said, so that a mean over fewer seeds is never taken for the full one."""
    import sys

    from automl.study.cells import missing_cells

    for budget, done in per_budget:
        missing = missing_cells(done, arms, seeds)
        if missing:
            print(f"automl: warning: {missing} cell(s) at {budget} have no result yet (failed, or still running in "
                  "another run, or that run's, recovered once its heartbeat is older than the grace period); run "
                  "the same command again to train them", file=sys.stderr)


class _Progress:
    """A progress bar over the cells on stderr; the cells of a budget are counted once they are queued."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("compare"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=stderr(), transient=True)
        self.task = self.bar.add_task("cells", total=0)

    def add(self, cells: int) -> None:
        self.bar.update(self.task, total=(self.bar.tasks[0].total or 0) + cells)

    def done(self, study: Any, trial: Any) -> None:
        self.bar.advance(self.task)

    def __enter__(self) -> "_Progress":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()


def _print(result: dict[str, Any]) -> None:
    from automl.study.analysis import power_note, verdicts

    console = stdout()
    for entry in result["budgets"]:
        console.print(_table(entry, result["reference"]))
    console.print(f"intervals: 95%, {result['ci_method']}; test: {result['test']}", soft_wrap=True)
    for line in verdicts(result):
        console.print(line, soft_wrap=True, markup=False)
    for crossing in result["crossings"]:
        console.print(f"order of the means flips (untested): {crossing['text']}", soft_wrap=True,
                      markup=False)
    note = power_note(result)
    if note:
        console.print(f"note: {note}", soft_wrap=True)


def _table(entry: dict[str, Any], reference: str):
    from rich.table import Table

    table = Table(title=f"{entry['budget']} (study {entry['study']})")
    for column in ("arm", "n", "val error [95% CI]", "single", "cost", "steps", f"vs {reference} [95% CI]",
                   "p (Holm)", "P(better)"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for row in entry["arms"]:
        test = row["vs_reference"] or {}
        cost = f"{_num(row['inference_cost'])}x {_num(row['inference_ms_per_1000'], '.3g')} ms/1k"
        table.add_row(row["arm"], str(row["n"]), f"{_num(row['mean'])} {_pair(row['ci'])}",
                      _num(row["single_model_mean"]), cost, _num(row["steps"], "g"),
                      f"{_num(test.get('diff'), '+.4f')} {_pair(test.get('ci'), '+.4f')}" if test else "-",
                      f"{test['p']:.3g} ({test['p_holm']:.3g})" if test else "-", _num(test.get("p_better"), ".2f"))
    return table


def _num(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _pair(pair: Any, spec: str = ".4f") -> str:
    return "-" if pair is None else f"[{format(pair[0], spec)}, {format(pair[1], spec)}]"
