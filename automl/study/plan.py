"""A trial's plan and how it ended: what the objective decides and trains, the worker records, and ranks share.

Apart from ``automl.study.objective`` so that the ranks of a trial on several devices (``automl.study.ranks``),
which the objective calls, can name them without importing the objective back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from optuna.trial import TrialState

from automl import records
from automl.errors import TrialFailed
from automl.train.settings import TrainSettings
from automl.run import TrialContext
from automl.trick import Trick
from automl.trick_errors import TrickError


@dataclass
class Outcome:
    """How a trial ended: what the worker tells Optuna, records and settles in the ledger."""

    state: TrialState
    """COMPLETE, PRUNED or FAIL."""
    spent_seconds: float
    attrs: dict[str, Any]
    """The user attributes to record (``spent_seconds`` and ``end_reason`` among them)."""
    value: float | list[float] | None = None
    """The validation error of a completed trial; with several objectives, its values (the error first)."""
    model: dict[str, Any] | None = None
    """The trained model's checkpoint, to keep in the artifact store (completed trials only)."""
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Extra weights the tricks kept (``Run.weights``), stored beside the model."""
    constraints: dict[str, float] = field(default_factory=dict)
    """``[study] constraints`` as Optuna's ``Trial.set_constraint`` takes them (feasible at zero or less)."""

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
    failure: TrickError | None = None
    """A trick's ``__init__`` refused its parameters: the trial fails without training."""
    start_rung: int = 0
    """The first budget rung to train (``automl.study.fidelity``): the last for a repeat of a configuration."""
    rungs_done: dict[int, float] = field(default_factory=dict)
    """The values of the budget rungs an earlier attempt at this trial completed (a retry trains them no more)."""


__all__ = ["Outcome", "TrialPlan"]
