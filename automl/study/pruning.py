"""Pruners that decide only outside the validation noise, and say why they pruned.

A rung is a step of ``trial.report``: a point of progress through one run (``fidelity = "progress"``) or a
complete run at a smaller budget (``fidelity = "budget"``, see ``automl.study.fidelity``). At each rung a trial
is compared with a cut-off computed from the other trials' values at the same rung: their median (``median``),
or the best 1/eta of them (``asha``, asynchronous successive halving, as Li et al. 2020 and Optuna's
``SuccessiveHalvingPruner``). A trial worse than the cut-off is pruned only when the difference is outside the
validation noise: both are error rates over the same ``val_size`` images, and the two-proportion z test (pooled)
must find the trial worse at one-sided 2.5% (z > 1.96). A difference the split cannot resolve (one image, two)
never prunes. The cut-off is itself a noisy value, picked as one of the lowest: a bound on the trial's error
alone against it (its Wilson interval above the cut-off) pruned 10-25% of trials that were all equally good in
simulation, the z test 1-6% (``tests/study/test_search.py``, benchmarks/RESULTS.md). The decision is kept for
the objective to write into the trial's ``end_detail``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.stats import proportions_z

ETA = 3
"""The reduction factor: a rung keeps the best 1/eta (``asha``), and budget rungs grow by eta."""
STARTUP = 4
"""Values a rung must hold, the trial's own included, before it prunes anything (a cut-off from fewer is noise)."""
RULES = ("median", "asha")
Z = 1.96
"""The z a trial's difference from the cut-off must exceed to prune it: one-sided 2.5%."""


@dataclass(frozen=True)
class Decision:
    """Why a trial was pruned at a rung."""

    rung: int
    value: float
    cutoff: float
    z: float
    """The two-proportion z of the difference; inf without a validation size (the plain comparison)."""
    bound: float
    """The z it had to exceed to be pruned."""
    competitors: int

    def detail(self, rule: str, eta: int = ETA) -> str:
        if rule == "median":
            kept = f"the median of the {self.competitors} other trials at that rung"
        else:
            kept = (f"the worst of the best 1/{eta} of the {self.competitors + 1} trials at that rung "
                    "(this one included)")
        noise = "" if math.isinf(self.z) else f", beyond the validation noise (z = {self.z:.2f} > {self.bound})"
        return (f"pruned at rung {self.rung}: validation error {self.value:.4f} is above {kept}, "
                f"{self.cutoff:.4f}{noise}")


class NoiseAwarePruner(optuna.pruners.BasePruner):
    """Prunes a trial at a rung when it is worse than the rung's cut-off by more than its validation noise.

    ``val_size``: the images a validation error is a fraction of (None: no interval, the plain comparison).
    """

    def __init__(self, rule: str = "asha", val_size: int | None = None, *, eta: int = ETA,
                 startup: int = STARTUP, z: float = Z) -> None:
        if rule not in RULES:
            raise ValueError(f"rule {rule!r}: use one of {RULES}")
        self.rule, self.val_size, self.eta, self.startup, self.z = rule, val_size, eta, startup, z
        self.decisions: dict[int, Decision] = {}
        """By trial number, why this process pruned it (read by the objective for ``end_detail``)."""

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        rung = trial.last_step
        if rung is None:
            return False
        value = trial.intermediate_values[rung]
        others = _values_at(study, rung, trial.number)
        if len(others) + 1 < self.startup or math.isnan(value):
            return math.isnan(value)
        cutoff = self.cutoff(others, value)
        if value <= cutoff:
            return False
        z = proportions_z(value, cutoff, self.val_size) if self.val_size else math.inf
        if z <= self.z:
            return False  # inside the noise: the split cannot tell the trial from the cut-off
        self.decisions[trial.number] = Decision(rung, value, cutoff, z, self.z, len(others))
        return True

    def explain(self, number: int) -> str | None:
        """Why trial ``number`` was pruned by this process, or None."""
        decision = self.decisions.get(number)
        return None if decision is None else decision.detail(self.rule, self.eta)

    def cutoff(self, others: list[float], value: float) -> float:
        """The value a trial at this rung must reach: the median of the others', or the worst of the best
        1/eta of all values at the rung (the trial's own among them), as successive halving promotes."""
        if self.rule == "median":
            ordered = sorted(others)
            middle = len(ordered) // 2
            return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        ordered = sorted([*others, value])
        return ordered[max(1, len(ordered) // self.eta) - 1]


def _values_at(study: optuna.Study, rung: int, number: int) -> list[float]:
    """The values other trials reported at ``rung`` (running, pruned or complete), NaNs left out."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    values = []
    for other in study.get_trials(deepcopy=False, states=states):
        value = other.intermediate_values.get(rung)
        if other.number != number and value is not None and not math.isnan(value):
            values.append(value)
    return values


__all__ = ["ETA", "RULES", "STARTUP", "Z", "Decision", "NoiseAwarePruner"]
