"""Snapshot ensembles: cyclic cosine annealing with restarts, and an ensemble of the end of each cycle.

Huang, Li, Pleiss, Liu, Hopcroft & Weinberger 2017, "Snapshot Ensembles: Train 1, get M for free";
the schedule is that of Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts".
The budget is cut into ``cycles`` equal parts of progress; in each the LR falls from ``alpha0`` to
about zero along a cosine, and the weights at the end of each part are kept. Inference averages
the softmax of the last ``k`` of them, so it costs ``k`` forward passes (``inference_cost``).
With ``start``, the first cycle takes that fraction of the budget and the others share the rest, so
that cycling begins only after coarse training (as the paper's critics suggested).
"""

from __future__ import annotations

import collections
import math

import torch

from automl import INFERENCE_COST, PLANNED_INFERENCE_COST, Trick, hookimpl
from automl.checks import integer, number
from automl_plugins._shared import MeanSoftmax, weights_copy

# Progress of a steps budget is step / N: a boundary that lands on a step may round to just below it.
_BOUNDARY_SLACK = 1e-9


def cycle_bounds(cycles: int, start: float | None = None) -> list[float]:
    """The progress at which each cycle starts, then 1: equal cycles, or a first one of ``start``."""
    if start is None:
        return [c / cycles for c in range(cycles)] + [1.0]
    return [0.0] + [start + (1 - start) * c / (cycles - 1) for c in range(cycles - 1)] + [1.0]


def cycle_of(progress: float, cycles: int, start: float | None = None) -> int:
    """The index (0 .. cycles - 1) of the cycle that ``progress`` in [0, 1] falls in."""
    if start is None:
        return min(cycles - 1, max(0, math.floor(progress * cycles + _BOUNDARY_SLACK)))
    bounds = cycle_bounds(cycles, start)
    return sum(1 for b in bounds[1:-1] if progress + _BOUNDARY_SLACK >= b)


def snapshot_lr_factor(progress: float, cycles: int, start: float | None = None) -> float:
    """``(cos(pi * t) + 1) / 2`` where ``t`` in [0, 1) is the position within the current cycle."""
    cycle = cycle_of(progress, cycles, start)
    if start is None:
        within = progress * cycles - cycle
    else:
        bounds = cycle_bounds(cycles, start)
        within = (progress - bounds[cycle]) / (bounds[cycle + 1] - bounds[cycle])
    return 0.5 * (math.cos(math.pi * min(max(within, 0.0), 1.0)) + 1.0)


class SnapshotEnsemble(Trick):
    name = "snapshot_ensemble"
    owns = ("lr_schedule", "inference")

    @classmethod
    def search_space(cls, trial):
        cycles = trial.suggest_int("cycles", 2, 8)
        return {
            "cycles": cycles,
            "alpha0": trial.suggest_float("alpha0", 0.05, 0.4, log=True),
            "k": trial.suggest_int("k", 1, cycles),
        }

    def __init__(self, cycles: int = 4, alpha0: float = 0.1, k: int | None = None,
                 start: float | None = None) -> None:
        """``cycles``: restarts of the schedule (M); ``alpha0``: the LR each cycle starts at, which
        replaces the study's base LR; ``k``: the last snapshots averaged at inference (None: all);
        ``start``: the fraction of the budget the first cycle takes, above an equal share (None: equal)."""
        integer(self.name, "cycles", cycles)
        if start is not None:
            integer(self.name, "cycles", cycles, at_least=2, must="at least 2 when start is set")
            number(self.name, "start", start, low=1 / cycles, high=1, high_open=True,
                   must=f"a fraction of the budget in [1/cycles = {1 / cycles:.4g}, 1)")
        self.start = None if start is None else float(start)
        number(self.name, "alpha0", alpha0, low=0, high=math.inf, low_open=True, high_open=True, must="a positive LR")
        if k is None:
            k = cycles
        integer(self.name, "k", k, at_most=cycles, must=f"an integer in [1, cycles={cycles}]")
        self.cycles = cycles
        self.alpha0 = float(alpha0)
        self.k = k
        self._reset()

    def _reset(self) -> None:
        # Only the last k snapshots are ever averaged, so only they stay on the device.
        self.snapshots: collections.deque[dict[str, torch.Tensor]] = collections.deque(maxlen=self.k)
        self.taken = 0
        self._cycle = 0
        self._ensemble = MeanSoftmax()

    def setup(self, run) -> None:
        self._reset()
        run.base_lr = self.alpha0
        run.attrs[PLANNED_INFERENCE_COST] = self.k  # what a prediction will cost once trained

    def lr_factor(self, progress: float) -> float:
        return snapshot_lr_factor(progress, self.cycles, self.start)

    def on_step_start(self, run) -> None:
        cycle = cycle_of(run.progress, self.cycles, self.start)
        if cycle > self._cycle:
            # No step of the new cycle has run yet: these weights end the previous one.
            self._snapshot(run)
            self._cycle = cycle

    def on_end(self, run) -> None:
        self._snapshot(run)
        for i, state in enumerate(self.snapshots, 1):  # the snapshots the ensemble averages, oldest first
            run.weights[f"{self.name}.{i}"] = state

    def _snapshot(self, run) -> None:
        self.snapshots.append(weights_copy(run.model))
        self.taken += 1
        run.attrs[f"{self.name}.snapshots"] = self.taken
        run.attrs[INFERENCE_COST] = len(self.snapshots)

    def state_dict(self, run) -> dict:
        return {"snapshots": list(self.snapshots), "taken": self.taken, "cycle": self._cycle}

    def load_state_dict(self, run, state: dict) -> None:
        self.snapshots.extend(state["snapshots"])
        self.taken, self._cycle = state["taken"], state["cycle"]

    def predict(self, run, x: torch.Tensor) -> torch.Tensor | None:
        return self._ensemble(run, self.snapshots, x)


@hookimpl
def automl_register_tricks():
    return [SnapshotEnsemble]
