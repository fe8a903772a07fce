"""One trial: choose tricks and hyperparameters, train under the trial budget, and say how it ended.

The objective writes nothing to the study: :meth:`Objective.begin` returns the trial's plan and
:meth:`Objective.train` its :class:`Outcome`; the worker records both (see ``automl.study.worker``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
import torch
from optuna.trial import TrialState

from automl.budget import Budget
from automl.errors import TrialFailed
from automl.space import TrickSettings, select_tricks
from automl.storage.artifacts import best_checkpoint, task_checkpoint
from automl.storage.optuna_adapter import trial_id
from automl.study import records
from automl.study.config import StudyConfig, config_digest
from automl.train.data import Dataset
from automl.train.loop import TrainResult, train
from automl.train.settings import TrainSettings
from automl.trick import Trick, TrialContext


@dataclass
class Outcome:
    """How a trial ended: what the worker tells Optuna, records and settles in the ledger."""

    state: TrialState
    """COMPLETE, PRUNED or FAIL."""
    spent_seconds: float
    attrs: dict[str, Any]
    """The user attributes to record (``spent_seconds`` and ``end_reason`` among them)."""
    value: float | None = None
    """The validation error of a completed trial."""
    model: dict[str, Any] | None = None
    """The trained model's checkpoint, to keep in the artifact store (completed trials only)."""
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Extra weights the tricks kept (``Run.weights``), stored beside the model."""

    @classmethod
    def failed(cls, exc: TrialFailed, spent: float) -> "Outcome":
        # What the run spent before it failed still counts against the study's budget.
        attrs = {records.ATTR_SPENT: spent, records.ATTR_END: exc.reason, records.ATTR_DETAIL: exc.detail}
        return cls(TrialState.FAIL, spent, attrs)


@dataclass
class TrialPlan:
    """What a trial will train with, decided before training; ``attrs`` record it with the trial."""

    tricks: list[Trick]
    settings: TrainSettings
    seed: int
    context: TrialContext
    attrs: dict[str, Any]


@dataclass
class Objective:
    """Plans and trains the trials of one study; the final validation error is the trial's value."""

    config: StudyConfig
    data: Dataset
    tricks: Mapping[str, type[Trick]]
    settings: Mapping[str, TrickSettings]
    device: torch.device
    budget: Budget
    artifacts: object
    """The artifact store that keeps each completed trial's model."""
    best_model_cache: Path
    """Where the study's best model is downloaded when a trick asks for it (``TrialContext.best_checkpoint``)."""
    seed: int
    """The study's seed (``[study] seed``, or ``automl run --seed``); trials train with seed + number."""

    def begin(self, trial: optuna.Trial) -> TrialPlan:
        """Choose the trial's tricks, parameters and seed."""
        study = trial.study
        context = TrialContext(
            study_name=study.study_name, trial_number=trial.number,
            best_checkpoint=lambda: best_checkpoint(study, self.artifacts, self.best_model_cache))
        tricks = select_tricks(trial, self.tricks, self.settings, context)
        settings = self.config.train.resolve(trial)
        seed = records.training_seed(self.seed, records.original_number(trial.storage.get_trial(trial_id(trial))))
        attrs: dict[str, Any] = {records.ATTR_TRICKS: [t.name for t in tricks], records.ATTR_BUDGET: str(self.budget),
                                 records.ATTR_CONFIG: config_digest(self.config), records.ATTR_SEED: seed}
        options = {t.name: dict(self.settings[t.name].options) for t in tricks
                   if t.name in self.settings and self.settings[t.name].options}
        if options:
            attrs[records.ATTR_OPTIONS] = options
        return TrialPlan(tricks, settings, seed, context, attrs)

    def train(self, trial: optuna.Trial, plan: TrialPlan) -> Outcome:
        """Train the planned trial, reporting each rung to the pruner."""

        def report(rung: int, progress: float, val_error: float) -> bool:
            trial.report(val_error, rung)
            return trial.should_prune()

        torch.manual_seed(plan.seed)
        model = self.config.task.build_model(self.data)
        started = time.perf_counter()
        try:
            result = train(model, self.data, plan.settings, self.budget, tricks=plan.tricks, device=self.device,
                           seed=plan.seed, report=report, context=plan.context)
        except TrialFailed as exc:
            return Outcome.failed(exc, time.perf_counter() - started)
        attrs = measured(result)
        if result.pruned:
            return Outcome(TrialState.PRUNED, result.spent_seconds, {**attrs, records.ATTR_END: "pruned"})
        return Outcome(TrialState.COMPLETE, result.spent_seconds, {**attrs, records.ATTR_END: "complete"},
                       value=result.val_error, model=task_checkpoint(self.config.task, model, self.data),
                       weights=result.weights)


def measured(result: TrainResult) -> dict[str, Any]:
    """What a run measured, as the trial's user attributes (the tricks' own ``run.attrs`` included)."""
    return {
        records.ATTR_SPENT: result.spent_seconds, "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds, records.ATTR_STEPS: result.steps, "epochs": round(result.epochs, 4),
        "progress": round(result.progress, 4), "train_loss": result.train_loss,
        "val_error_model": result.val_error_model, **result.attrs,
    }
