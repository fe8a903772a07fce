"""Inference cost as objectives and constraints: measured before a trial trains, bounded, and told to Optuna.

A configuration's inference cost depends on its model and tricks, not on its training, so it is measured
before the first step, on the trial's device: the model's forward pass on one warm batch of validation images
(median of repeats, synchronised; ``automl.train.cost``), times the forward passes one prediction will take as
the tricks declare them in their ``setup`` (``run.attrs[PLANNED_INFERENCE_COST]``: an ensemble of M members, M). The
pruner ranks trials on it from the first rung; a trial over a ``[study] constraints`` bound is not trained at
all. The cost is measured again once the trial has trained (the trick's own ``predict``, every pass), and the
trial's values are that measurement: both are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from automl import records
from automl.errors import TrialFailed
from automl.run import Run
from automl.train.cost import InferenceCost, measure_inference

OBJECTIVES = ("error", "latency", "flops", "passes")
"""What a study may minimise: the validation error (always first), then inference costs."""
CONSTRAINTS = ("latency_ms", "flops", "passes")
"""What ``[study] constraints`` may bound: milliseconds per image, FLOPs per image, forward passes."""
_OF_OBJECTIVE = {"latency": "latency_ms", "flops": "flops", "passes": "passes"}
ATTR_COST_BEFORE = "inference_before"
"""A trial's user attribute: its inference cost measured before training, ``{latency_ms, flops, passes,
device}`` (per image)."""
ATTR_COST_AFTER = "inference_after"
"""A trial's user attribute: its inference cost measured once trained, as :data:`ATTR_COST_BEFORE`."""
OVER_CONSTRAINT = "over_constraint"
"""The ``end_reason`` of a trial whose inference cost, measured before training, broke a constraint."""


@dataclass(frozen=True)
class Cost:
    """What one prediction of one image costs."""

    latency_ms: float
    flops: float
    passes: int
    device: str

    @classmethod
    def of(cls, measured: InferenceCost, passes: int) -> "Cost":
        return cls(measured.ms_per_1000 / 1000, measured.flops_per_image, passes, measured.device)

    def as_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "flops": self.flops, "passes": self.passes, "device": self.device}

    def of_name(self, name: str) -> float:
        """The cost a constraint (``latency_ms``) or an objective (``latency``) names."""
        return float(getattr(self, _OF_OBJECTIVE.get(name, name)))


class OverConstraint(TrialFailed):
    """A configuration whose cost, measured before training, breaks a constraint: it is not trained."""

    def __init__(self, cost: Cost, broken: Mapping[str, float]) -> None:
        shown = "; ".join(f"{name} {cost.of_name(name):.4g} > {bound:g}" for name, bound in broken.items())
        super().__init__(OVER_CONSTRAINT, f"not trained: its inference cost measured before training breaks "
                                          f"[study] constraints ({shown}, per image on {cost.device})")
        self.cost = cost


def measure_before(run: Run) -> Cost:
    """The cost of one prediction as the run will predict once trained, measured on its model as it is before
    the first step: one forward pass, times the passes the tricks declared in their ``setup``."""
    passes = int(run.attrs.get(records.PLANNED_INFERENCE_COST, run.attrs.get(records.INFERENCE_COST, 1)))
    one_pass = measure_inference(run, run.data.val)  # the model alone: the tricks' predict may hold nothing yet
    return Cost(one_pass.ms_per_1000 / 1000 * passes, one_pass.flops_per_image * passes, passes, one_pass.device)


def broken(cost: Cost, constraints: Mapping[str, float]) -> dict[str, float]:
    """The constraints ``cost`` breaks, with their bounds."""
    return {name: bound for name, bound in constraints.items() if cost.of_name(name) > bound}


def objective_values(error: float, cost: Cost, objectives: Sequence[str]) -> list[float]:
    """The trial's values, in the order of ``[study] objectives``."""
    return [error if name == "error" else cost.of_name(name) for name in objectives]


def constraint_values(cost: Cost, constraints: Mapping[str, float]) -> dict[str, float]:
    """Each constraint as Optuna's ``set_constraint`` takes it: feasible at zero or less."""
    return {name: cost.of_name(name) - bound for name, bound in constraints.items()}


__all__ = ["ATTR_COST_AFTER", "ATTR_COST_BEFORE", "CONSTRAINTS", "OBJECTIVES", "OVER_CONSTRAINT", "Cost",
           "OverConstraint", "broken", "constraint_values", "measure_before", "objective_values"]
