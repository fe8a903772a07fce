"""What a training run measured, as ``automl.train.loop.train`` returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from automl.train.cost import InferenceCost


@dataclass
class TrainResult:
    """What a run measured. Errors are fractions in [0, 1]."""

    val_error: float
    """With the tricks' ``predict`` where one takes over inference (an ensemble), else the model's."""
    val_error_model: float
    """The trained model alone."""
    train_seconds: float
    eval_seconds: float
    steps: int
    epochs: float
    progress: float
    pruned: bool
    train_loss: float
    history: list[tuple[float, float]] = field(default_factory=list)
    """(progress, val_error) at each rung."""
    test_error: float | None = None
    test_error_model: float | None = None
    data_wait_seconds: float = 0.0
    """Of ``train_seconds``, the time the loop waited for the loader's batches."""
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """The extra weights the tricks kept (see ``Run.weights``)."""
    inference: InferenceCost | None = None
    """The measured cost of one prediction of the trained run; None when it was pruned (or has no validation
    images). Measured after training and evaluation, on neither's clock."""
    checkpoint_seconds: float = 0.0
    """Spent writing checkpoints inside the run (see ``automl.train.checkpoints``)."""
    resumed_seconds: float = 0.0
    """Of ``spent_seconds``, those spent before the checkpoint this run resumed from (0 for a fresh run)."""
    devices: int = 1
    """The devices the run trained on at once (one per rank); its wall-clock seconds are charged on each."""

    @property
    def spent_seconds(self) -> float:
        """Device-seconds: the seconds the run took, on each of its devices."""
        return (self.train_seconds + self.eval_seconds + self.checkpoint_seconds) * self.devices

    @property
    def data_wait_fraction(self) -> float:
        """The fraction of the training time spent waiting for data: near 1, the data is the bottleneck."""
        return min(1.0, self.data_wait_seconds / self.train_seconds) if self.train_seconds > 0 else 0.0
