"""One trial: choose tricks and hyperparameters, train under the trial budget, record what happened."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import optuna
import torch

from automl.budget import Budget
from automl.errors import TrialFailed
from automl.space import TrickSettings, select_tricks
from automl.storage.artifacts import best_checkpoint, save_trial_model
from automl.study.config import StudyConfig, config_digest
from automl.train.data import Dataset
from automl.train.loop import train
from automl.trick import Trick, TrialContext

# Trial user attributes, the record `automl trials` and `automl best` read back.
ATTR_TRICKS = "tricks"
ATTR_SPENT = "spent_seconds"
ATTR_END = "end_reason"
ATTR_DETAIL = "end_detail"
ATTR_SEED = "seed"
# What `automl export` needs to rebuild a trial: the budget it ran under (the command line may have
# overridden the file's) and the digest of the study config it ran with (which stored text, which variant).
ATTR_BUDGET = "budget"
ATTR_CONFIG = "config_sha256"


def original_number(trial: optuna.Trial) -> int:
    """The trial's own number, or for a retry (of a trial whose worker died) the number of the trial it
    re-runs, so the retry trains with the same seed as well as the same parameters."""
    frozen = trial.storage.get_trial(trial._trial_id)
    history = frozen.system_attrs.get("retry_history", [])  # what Optuna's retry callback records
    return history[0] if history else trial.number


@dataclass
class Objective:
    """Callable for ``study.optimize``: returns the final validation error of one trial."""

    config: StudyConfig
    data: Dataset
    tricks: Mapping[str, type[Trick]]
    settings: Mapping[str, TrickSettings]
    device: torch.device
    budget: Budget
    artifacts: object
    """The artifact store that keeps each completed trial's model."""
    teacher_cache: Path
    seed: int | None = None
    """The study's seed when ``automl run --seed`` overrides ``[study] seed``; trials train with seed + number."""

    def __call__(self, trial: optuna.Trial) -> float:
        study = trial.study
        context = TrialContext(
            study_name=study.study_name, trial_number=trial.number,
            best_checkpoint=lambda: best_checkpoint(study, self.artifacts, self.teacher_cache))
        tricks = select_tricks(trial, self.tricks, self.settings, context)
        train_settings = self.config.train.resolve(trial)
        trial.set_user_attr(ATTR_TRICKS, [t.name for t in tricks])
        trial.set_user_attr(ATTR_BUDGET, str(self.budget))
        trial.set_user_attr(ATTR_CONFIG, config_digest(self.config))
        options = {t.name: dict(self.settings[t.name].options) for t in tricks
                   if t.name in self.settings and self.settings[t.name].options}
        if options:
            trial.set_user_attr("options", options)
        seed = (self.config.study.seed if self.seed is None else self.seed) + original_number(trial)
        trial.set_user_attr(ATTR_SEED, seed)
        torch.manual_seed(seed)
        task = self.config.task
        model = task.build_model(self.data)

        def report(rung: int, progress: float, val_error: float) -> bool:
            trial.report(val_error, rung)
            return trial.should_prune()

        started = time.perf_counter()
        try:
            result = train(model, self.data, train_settings, self.budget, tricks=tricks,
                           device=self.device, seed=seed, report=report, context=context)
        except TrialFailed as exc:
            # What the run spent before it failed still counts against the study's budget.
            trial.set_user_attr(ATTR_SPENT, time.perf_counter() - started)
            trial.set_user_attr(ATTR_END, exc.reason)
            trial.set_user_attr(ATTR_DETAIL, exc.detail)
            raise
        except BaseException:
            with contextlib.suppress(Exception):  # the error that stopped the run is the one to raise
                trial.set_user_attr(ATTR_SPENT, time.perf_counter() - started)
            raise
        for key, value in {
            ATTR_SPENT: result.spent_seconds, "train_seconds": result.train_seconds,
            "eval_seconds": result.eval_seconds, "steps": result.steps, "epochs": round(result.epochs, 4),
            "progress": round(result.progress, 4), "train_loss": result.train_loss,
            "val_error_model": result.val_error_model, **result.attrs,
        }.items():
            trial.set_user_attr(key, value)
        if result.pruned:
            trial.set_user_attr(ATTR_END, "pruned")
            raise optuna.TrialPruned(f"pruned at progress {result.progress:.2f}")
        save_trial_model(trial, self.artifacts, task.checkpoint(model, self.data), result.weights)
        trial.set_user_attr(ATTR_END, "complete")
        return result.val_error
