"""One trial: choose tricks and hyperparameters, train under the trial budget, record what happened."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import optuna
import torch

from automl.budget import Budget
from automl.errors import TrialFailed
from automl.space import TrickSettings, select_tricks
from automl.study.config import StudyConfig
from automl.train.data import Dataset
from automl.train.loop import train
from automl.train.models import build_model
from automl.trick import Trick

# Trial user attributes, the record `automl trials` and `automl best` read back.
ATTR_TRICKS = "tricks"
ATTR_SPENT = "spent_seconds"
ATTR_END = "end_reason"
ATTR_DETAIL = "end_detail"


@dataclass
class Objective:
    """Callable for ``study.optimize``: returns the final validation error of one trial."""

    config: StudyConfig
    data: Dataset
    tricks: Mapping[str, type[Trick]]
    settings: Mapping[str, TrickSettings]
    device: torch.device
    budget: Budget

    def __call__(self, trial: optuna.Trial) -> float:
        tricks = select_tricks(trial, self.tricks, self.settings)
        train_settings = self.config.train.resolve(trial)
        trial.set_user_attr(ATTR_TRICKS, [t.name for t in tricks])
        seed = self.config.study.seed + trial.number
        torch.manual_seed(seed)
        task = self.config.task
        model = build_model(task.model, in_channels=self.data.input_shape[0],
                            num_classes=self.data.num_classes, **task.model_args)

        def report(rung: int, progress: float, val_error: float) -> bool:
            trial.report(val_error, rung)
            return trial.should_prune()

        started = time.perf_counter()
        try:
            result = train(model, self.data, train_settings, self.budget, tricks=tricks,
                           device=self.device, seed=seed, report=report)
        except TrialFailed as exc:
            # What the run spent before it failed still counts against the study's budget.
            trial.set_user_attr(ATTR_SPENT, time.perf_counter() - started)
            trial.set_user_attr(ATTR_END, exc.reason)
            trial.set_user_attr(ATTR_DETAIL, exc.detail)
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
        trial.set_user_attr(ATTR_END, "complete")
        return result.val_error
