"""The base training hyperparameters of a study's ``[train]`` section, fixed or searched."""

from __future__ import annotations

from typing import Any, Literal

from optuna.distributions import FloatDistribution
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from automl.overrides import Range, resolve, suggest
from automl.trick_space import SEARCH_PREFIX

EVAL_BATCH_SIZE = 1024
"""Images per batch when a run is evaluated, unless ``[train] eval_batch_size`` says otherwise."""


class TrainSettings(BaseModel):
    """Optimizer and data settings shared by every trial; a number may be a ``{low, high, log}`` range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: PositiveFloat | Range = 0.05
    momentum: float | Range = Field(0.9, ge=0)
    nesterov: bool = True
    weight_decay: float | Range = Field(5e-4, ge=0)
    batch_size: PositiveInt = 128
    augment: bool = True
    """Random crop with padding (and flip) on every training batch."""
    crop_padding: int | None = Field(None, ge=0)
    """Pixels of padding before the random crop; None: an eighth of the image side (4 for 32 px)."""
    flip: bool = True
    """Horizontal flips; off for data where mirror images change the class (digits)."""
    rungs: PositiveInt = 4
    """Evaluations on the validation split, evenly spaced in progress; the last is at the end."""
    eval_batch_size: PositiveInt = EVAL_BATCH_SIZE

    @model_validator(mode="after")
    def _sampleable(self) -> "TrainSettings":
        self.check_ranges()
        return self

    def searched(self) -> dict[str, Range]:
        return {k: v for k, v in self if isinstance(v, Range)}

    def check_ranges(self) -> None:
        """Raise ValueError naming a searched field whose range cannot be sampled."""
        for name, rng in self.searched().items():
            _distribution(name, rng)

    def resolve(self, trial: Any) -> "TrainSettings":
        """Concrete settings for one trial: each range is suggested as ``train.<field>``."""
        chosen = {name: suggest(trial, f"{SEARCH_PREFIX}.{name}", _distribution(name, rng))
                  for name, rng in self.searched().items()}
        return self.model_copy(update=chosen)


def _distribution(name: str, rng: Range) -> FloatDistribution:
    if rng.low is None or rng.high is None:
        raise ValueError(f"{name} needs both low and high, got {rng.model_dump(exclude_none=True)}")
    try:
        return resolve(FloatDistribution(rng.low, rng.low), rng)  # type: ignore[return-value]
    except ValueError as exc:
        raise ValueError(f"{name} {exc}") from None
