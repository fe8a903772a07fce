"""Comparisons and confirmations from Python, by the code `automl compare` and `automl confirm` run."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Sequence

from automl.api.arguments import command_args
from automl.api.studies import Say, WorkerFailed, quiet_optuna, study_path
from automl.api.tables import comparison_rows, frame
from automl.cli.options import host, ignore, to_stderr


class Comparison:
    """A comparison as `automl compare --json` gives it (``.result``), read as a table, its verdicts and the
    budgets at which two arms change places."""

    def __init__(self, result: dict[str, Any], notes: list[str] | None = None) -> None:
        self.result, self.notes = result, notes or []

    def __repr__(self) -> str:
        arms = len(self.result["budgets"][0]["arms"]) if self.result["budgets"] else 0
        return (f"Comparison({self.result['study']!r}, {arms} arms, budgets "
                f"{[b['budget'] for b in self.result['budgets']]}, {self.result['design']} design)")

    @property
    def table(self) -> Any:
        """One row per arm and budget (a pandas DataFrame, a list of dicts without pandas): mean and interval,
        seeds, decision, the difference to the reference with its interval, p and p after Holm."""
        return frame(comparison_rows(self.result))

    @property
    def verdicts(self) -> list[str]:
        """The lines `automl compare` prints under its table, worded as its test allows."""
        from automl.study.analysis import verdicts

        return verdicts(self.result)

    @property
    def crossings(self) -> list[dict[str, Any]]:
        """Each pair of arms whose order flips between budgets (``better``, ``worse``, ``before``, ``after``,
        ``text``)."""
        return self.result["crossings"]


def compare(study: str | Path | dict[str, Any], *, budgets: Sequence[str] | str | None = None,
            seeds: int | None = None, max_seeds: int | None = None, tolerance: float | None = None,
            reference: str | None = None, drop_losers: bool = False, storage: str | None = None,
            variant: str | None = None, device: str | None = None, workers: int | None = None,
            threads: int | None = None, gpus_per_trial: int | None = None, plugins: tuple[str, ...] = (),
            report: str | Path | None = None, png: str | Path | None = None, progress: bool = False) -> Comparison:
    """Compare a study file's recipes as `automl compare` does (the keywords are its options; ``report``: the
    HTML file it writes with ``-o``, ``png``: the folder of ``--png``), with the same checks; nothing printed
    unless ``progress``."""
    from automl.study.launch import in_ranks, prepare_compare

    if budgets is not None and not isinstance(budgets, str):
        budgets = ",".join(str(b) for b in budgets)
    options = dict(budgets=budgets, seeds=seeds, max_seeds=max_seeds, tolerance=tolerance, reference=reference,
                   drop_losers=drop_losers, storage=storage, variant=variant, device=device, workers=workers,
                   threads=threads, gpus_per_trial=gpus_per_trial, plugin=list(plugins),
                   output=report, png=png)
    args = command_args("compare", [study_path(study)], options)
    notes: list[str] = []
    say = to_stderr if progress else notes.append
    with quiet_optuna():
        outputs = report_outputs(args)
        launch, design = prepare_compare(args, lambda: host(args.plugin, args.traceback, say))
        result = in_ranks(launch, lambda: compare_launched(launch, design, say, progress))
        if outputs is not None:
            write_comparison_report(result, launch.url, *outputs, say=say)
    return Comparison(result, notes)


def compare_launched(launch: Any, design: Any, say: Say, progress: bool) -> dict[str, Any]:
    """Train a prepared comparison's cells, budget after budget, and test them: `automl compare`'s result, the
    command's and the API's; the warnings said, the cells' bar shown when ``progress``."""
    from automl.cli.options import stderr, warn_if_overloaded
    from automl.report.progress import CellProgress
    from automl.study.analysis import comparison, fixed_seeds_warning
    from automl.study.cells import completed_cells
    from automl.study.launch import train_budget
    from automl.study.processes import worker_failure
    from automl.study.race import losers

    warn_if_overloaded(launch.prepared.device, design.budgets, say)
    if design.sequential is None and (warning := fixed_seeds_warning(design.seeds, len(design.arms) - 1)):
        say(f"automl: warning: {warning}")
    per_budget, dropped = [], []
    with CellProgress(stderr()) if progress else contextlib.nullcontext() as bar:
        for budget in design.budgets:
            study, status = train_budget(launch, design, budget, list(dropped),
                                         on_queued=bar.add if bar else ignore, on_trial=bar.done if bar else ignore)
            if status:
                raise WorkerFailed(worker_failure(status))
            done = completed_cells(study, design.seeds)
            per_budget.append((budget, done, list(dropped)))
            if design.drop_losers and design.sequential is not None:
                dropped += losers(done, design.running(dropped), design.sequential)
    _warn_missing(per_budget, design, say)
    result = comparison(launch.prepared.name, design.arms, design.reference, design.seeds, per_budget,
                        design.sequential)
    if result["steps_warning"]:
        say(f"automl: warning: {result['steps_warning']}")
    return result


def report_outputs(args: Any):
    """(HTML file, PNG folder) of ``-o`` / ``--png``, checked before any cell is trained; None without either."""
    from automl.report.study_report import output_paths

    if args.output is None and args.png is None:
        return None
    return output_paths(args.output, args.png)


def write_comparison_report(result: dict[str, Any], url: str, html, png_dir, say: Say) -> None:
    """The comparison's report (as `automl report` on it writes it); each path written said (stdout may be
    JSON)."""
    from automl.report.comparison_report import build_comparison_report
    from automl.report.study_report import write_report
    from automl.storage import mask_url

    for path in write_report(build_comparison_report(result, mask_url(url)), html, png_dir):
        say(f"wrote {path}")


def _warn_missing(per_budget, design, say: Say) -> None:
    """Cells without a result are said, so that a mean over fewer seeds is never taken for the full one."""
    from automl.study.cells import missing_cells
    from automl.study.race import sequential_gaps

    for budget, done, dropped in per_budget:
        if design.sequential is not None:
            missing = sequential_gaps(done, design.running(dropped), design.reference, design.sequential)
        else:
            missing = missing_cells(done, design.arms, design.seeds)
        if missing:
            say(f"automl: warning: {missing} cell(s) at {budget} have no result yet (failed, or still running in "
                "another run, or that run's, recovered once its heartbeat is older than the grace period); run "
                "the same command again to train them")


def confirm(study: str | Path, *, top: int | None = None, seeds: int | None = None, storage: str | None = None,
            variant: str | None = None, plugins: tuple[str, ...] = (), progress: bool = False) -> dict[str, Any]:
    """Train the study's best trials again at paired seeds and rank them by their mean, as `automl confirm`
    does; the ranking (also recorded in the study, where ``StudyResult.best()`` then reads it)."""
    args = command_args("confirm", [str(study)], dict(top=top, seeds=seeds, storage=storage, variant=variant,
                                                      plugin=list(plugins)))
    with quiet_optuna():
        return confirm_parsed(args, to_stderr if progress else ignore)[1]


def confirm_parsed(args: Any, say: Say) -> tuple[str, dict[str, Any]]:
    """(the study's name, `automl confirm`'s ranking) from its parsed options, the command's and the API's; each
    trial said as it starts."""
    from automl.cli.options import study_location
    from automl.study.confirm import check_request, confirm as confirm_trials

    check_request(args.top, args.seeds)
    name, url, _ = study_location(args)
    plugins = host(args.plugin, args.traceback, say)

    def on_trial(index: int, number: int) -> None:
        say(f"confirming trial {number} ({index + 1} of at most {args.top}), {args.seeds} seeds")

    return name, confirm_trials(url, name, plugins, top=args.top, seeds=args.seeds, on_trial=on_trial)


__all__ = ["Comparison", "compare", "compare_launched", "confirm", "confirm_parsed", "report_outputs", "write_comparison_report"]
