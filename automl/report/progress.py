"""The live displays of long work: a running study (trials, best so far, budget left), the cells of a comparison
and `automl train`'s seeds."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn)

from automl.storage import mask_url
from automl.storage.ledger import Ledger
from automl.storage.optuna_adapter import study_engine
from automl.report.tables import interval
from automl.records import ATTR_SPENT, ATTR_TRICKS, ATTR_VAL_SIZE, end_reason, error_of, val_interval
from automl.study.incumbent import configurations
from automl.study.pareto import pareto_front
from automl.study.runner import PreparedStudy


def _best_text(study: optuna.Study) -> str:
    """The best configuration so far as `automl best` ranks it: its mean and seeds, or its one trial's value."""
    if len(study.directions) > 1:  # no one best: the size of the front so far
        front = pareto_front(study.get_trials(deepcopy=False))
        return f"front of {len(front)}" if front else "-"
    ranked = configurations(study.get_trials(deepcopy=False))
    if not ranked:
        return "-"
    best = ranked[0]
    seeds = f", {best.n_seeds} seeds" if best.n_seeds > 1 else ""
    return f"{best.mean:.4f} (#{best.first.number}{seeds})"


class RunDisplay:
    """A progress bar over the study's budget (or trial count), and one line per finished trial."""

    def __init__(self, prepared: PreparedStudy, console: Console) -> None:
        self.prepared = prepared
        self.console = console
        budget = prepared.total_budget
        self.by_time = budget is not None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[left]}"),
            TextColumn("best {task.fields[best]}"), TimeElapsedColumn(), console=console, transient=False)
        self.task = self.progress.add_task(
            prepared.name, total=budget.amount if self.by_time else prepared.n_trials, left="", best="-")

    def __enter__(self) -> "RunDisplay":
        p = self.prepared
        self.console.print(f"study [bold]{p.name}[/bold] in {mask_url(p.storage_url)}: "
                           f"{p.study_file.config.task.dataset}/{p.study_file.config.task.model} on {p.device}, "
                           f"trial budget {p.trial_budget}, total {p.total_budget or '-'}, "
                           f"n_trials {p.n_trials or '-'}, tricks: {', '.join(p.tricks) or '(none)'}",
                           soft_wrap=True)
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def resumed(self, study: optuna.Study) -> None:
        """Start from where a resumed study stands: its best so far and what it has used, before any new trial."""
        if study.get_trials(deepcopy=False):
            self._update(study)

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        error = error_of(trial)
        ci = val_interval(error, trial.user_attrs.get(ATTR_VAL_SIZE))
        value = "-" if error is None else f"{error:.4f}" + ("" if ci is None else f" {interval(ci)}")
        tricks = ", ".join(trial.user_attrs.get(ATTR_TRICKS, [])) or "-"
        spent = trial.user_attrs.get(ATTR_SPENT, 0.0)
        self.progress.console.print(
            f"trial {trial.number:>3}  {end_reason(trial):<9} "
            f"error {value:<24} {spent:6.1f}s  {tricks}")
        self._update(study)

    def _update(self, study: optuna.Study) -> None:
        best = _best_text(study)
        if self.by_time:
            used = Ledger(study_engine(study), study.study_name).totals().spent
            total = self.prepared.total_budget.amount
            self.progress.update(self.task, completed=min(used, total), left=f"{max(0.0, total - used):.0f}s left", best=best)
        else:
            self.progress.update(self.task, completed=len(study.trials), left=f"{len(study.trials)} trials", best=best)


class SeedProgress:
    """A progress bar per seed on ``console``, moved after each step."""

    def __init__(self, seeds: list[int], console: Any) -> None:
        self.progress = Progress(TextColumn("[bold]seed {task.fields[seed]}"), BarColumn(), TaskProgressColumn(),
                                 TimeElapsedColumn(), console=console)
        self.tasks = {s: self.progress.add_task("train", total=1.0, seed=s, start=False) for s in seeds}

    def __enter__(self) -> "SeedProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, seed: int, progress: float) -> None:
        task = self.tasks[seed]
        self.progress.start_task(task)  # the clock of a seed starts with its first step
        self.progress.update(task, completed=progress)


class CellProgress:
    """A progress bar over the cells of `automl compare` on ``console``; the cells of a budget are counted once they
    are queued."""

    def __init__(self, console: Any) -> None:
        self.bar = Progress(TextColumn("compare"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.task = self.bar.add_task("cells", total=0)

    def add(self, cells: int) -> None:
        self.bar.update(self.task, total=(self.bar.tasks[0].total or 0) + cells)

    def done(self, study: Any, trial: Any) -> None:
        self.bar.advance(self.task)

    def __enter__(self) -> "CellProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()
