"""Pruning on several objectives: error and inference cost, ranked at each rung by non-dominated sorting.

Optuna's ``Trial.report`` and ``should_prune`` refuse multi-objective studies, so a trial's rung values are kept
in its user attribute :data:`ATTR_RUNG_OBJECTIVES` (``{"0": [error, cost, ...], ...}``), written as each rung
ends; :class:`ParetoPruner` reads them there, and can be used alone: ``pruner.prune(study, trial)``.

The rule is MOASHA's (Schmucker et al. 2021; Syne Tune's ``multiobjective/moasha.py``) with whole fronts: the
trials at a rung are sorted into non-dominated fronts, and a trial goes on while the fronts before its own hold
fewer than 1/eta of them, so a non-dominated trial (a cheap one slightly worse, say) is never pruned. Where that
would prune, the noise rule of ``automl.study.pruning`` is applied to the error: the trial is pruned only if the
weakest trial of the kept fronts that dominates it (the one with the highest error) has an error lower beyond the
validation noise (the pooled two-proportion z over ``val_size`` images above 1.96, one-sided 2.5%). With equal
costs this is the single-objective guard exactly: the weakest kept trial is the cut-off of the best 1/eta.
Costs are compared as measured: they are medians of repeated timings before training, or counts (FLOPs, forward
passes), not draws of a noisy split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from automl import records
from automl.stats import proportions_z
from automl.storage.optuna_adapter import trial_id
from automl.study.pruning import ETA, STARTUP, Z

ATTR_RUNG_OBJECTIVES = "rung_objectives"
"""A trial's user attribute: its objectives at each rung it reached, ``{"rung": [error, cost, ...]}``."""


def dominance(points: np.ndarray) -> np.ndarray:
    """``d[i, j]``: whether row ``i`` of ``points`` (n x objectives, all minimised) dominates row ``j``, being no
    worse in every objective and better in one."""
    points = np.asarray(points, dtype=float)
    no_worse = (points[:, None, :] <= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] < points[None, :, :]).any(axis=2)
    return no_worse & better


def fronts(points: np.ndarray, dominates: np.ndarray | None = None) -> np.ndarray:
    """The non-dominated front of each row of ``points``: 0 for the rows no other row dominates, 1 for those only
    front 0 dominates, and so on (``dominates``: their :func:`dominance`, where it is known already)."""
    dominates = dominance(points) if dominates is None else dominates
    front = np.full(len(points), -1)
    left = np.ones(len(points), dtype=bool)
    level = 0
    while left.any():
        dominated = (dominates & left[:, None]).any(axis=0)
        current = left & ~dominated
        front[current] = level
        left &= ~current
        level += 1
    return front


@dataclass(frozen=True)
class ParetoDecision:
    """Why a trial was pruned at a rung: the weakest trial of the kept fronts that dominates it, beyond the noise."""

    rung: int
    values: tuple[float, ...]
    dominated_by: int
    by_values: tuple[float, ...]
    z: float
    bound: float
    competitors: int

    def detail(self, objectives: Sequence[str]) -> str:
        def shown(values: tuple[float, ...]) -> str:
            return ", ".join(f"{name} {value:.4g}" for name, value in zip(objectives, values))

        noise = "" if math.isinf(self.z) else f", its error lower beyond the validation noise (z = {self.z:.2f} > " \
                                              f"{self.bound})"
        return (f"pruned at rung {self.rung}: ({shown(self.values)}) is dominated by trial {self.dominated_by} "
                f"({shown(self.by_values)}), of the fronts that keep the best 1/eta of the {self.competitors + 1} "
                f"trials at that rung{noise}")


class ParetoPruner(optuna.pruners.BasePruner):
    """Prunes a trial at a rung when it lies outside the non-dominated fronts that hold the best 1/eta of the
    trials there, and a trial of those fronts dominates it with an error lower beyond the validation noise.

    ``val_size``: the images an error is a fraction of (None: errors compared as they are). The first objective
    is the error; the others are costs.
    """

    def __init__(self, val_size: int | None = None, *, eta: int = ETA, startup: int = STARTUP, z: float = Z,
                 objectives: Sequence[str] = ("error", "cost")) -> None:
        self.val_size, self.eta, self.startup, self.z = val_size, eta, startup, z
        self.objectives = tuple(objectives)
        """The objectives' names, as the decisions show them."""
        self.decisions: dict[int, ParetoDecision] = {}
        """By trial number, why this process pruned it (for the trial's ``end_detail``)."""

    def explain(self, number: int) -> str | None:
        """Why trial ``number`` was pruned by this process, or None."""
        decision = self.decisions.get(number)
        return None if decision is None else decision.detail(self.objectives)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        rungs = rung_objectives(trial)
        if not rungs:
            return False
        rung = max(rungs)
        values = rungs[rung]
        if math.isnan(values[0]):
            return True
        others = _objectives_at(study, rung, trial.number)
        if len(others) + 1 < self.startup:
            return False
        numbers = [number for number, _ in others]
        points = np.array([values, *(point for _, point in others)], dtype=float)
        dominates = dominance(points)
        front = fronts(points, dominates)
        kept_fronts = _kept_fronts(front, self.eta)
        if front[0] in kept_fronts:
            return False
        decision = self._beyond_noise(points, front, kept_fronts, dominates[:, 0], numbers, rung)
        if decision is None:
            return False
        self.decisions[trial.number] = decision
        return True

    def _beyond_noise(self, points: np.ndarray, front: np.ndarray, kept_fronts: set[int], over_mine: np.ndarray,
                      numbers: list[int], rung: int) -> ParetoDecision | None:
        """The decision to prune row 0, if the kept trial that dominates it (``over_mine``: the rows that do) with
        the highest error (the weakest of them, as the single-objective cut-off is the worst of the best 1/eta)
        has an error lower beyond the noise; None otherwise, or if no kept trial dominates it."""
        mine = points[0]
        dominating = [i for i in range(1, len(points)) if front[i] in kept_fronts and over_mine[i]]
        if not dominating:
            return None
        weakest = max(dominating, key=lambda i: points[i][0])
        other = points[weakest]
        if self.val_size:
            z = proportions_z(mine[0], other[0], self.val_size)
        else:
            z = math.inf if other[0] < mine[0] else 0.0
        if z <= self.z:
            return None
        return ParetoDecision(rung, tuple(map(float, mine)), numbers[weakest - 1], tuple(map(float, other)), z,
                              self.z, len(points) - 1)


class ParetoReport:
    """A trial of a study of several objectives as the rungs see it: ``report`` keeps the rung's objectives in
    :data:`ATTR_RUNG_OBJECTIVES` (Optuna's ``report`` refuses such studies), ``should_prune`` asks the study's
    :class:`ParetoPruner`; everything else is the trial's."""

    def __init__(self, trial: Any, values_of: Callable[[float], list[float]]) -> None:
        self.trial, self.values_of = trial, values_of

    def report(self, error: float, rung: int) -> None:
        rungs = dict(self.trial.user_attrs.get(ATTR_RUNG_OBJECTIVES, {}))
        rungs[str(rung)] = self.values_of(error)
        self.trial.set_user_attr(ATTR_RUNG_OBJECTIVES, rungs)

    def should_prune(self) -> bool:
        study = self.trial.study
        return study.pruner.prune(study, self.trial.storage.get_trial(trial_id(self.trial)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trial, name)


def _kept_fronts(front: np.ndarray, eta: int) -> set[int]:
    """The fronts that go on: each front whose predecessors hold fewer than the best 1/eta of the trials."""
    quota = max(1, len(front) // eta)
    kept, before = set(), 0
    for level in range(int(front.max()) + 1):
        if before >= quota:
            break
        kept.add(level)
        before += int((front == level).sum())
    return kept


def pareto_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The completed, feasible trials (every ``Trial.set_constraint`` value at zero or less) that no other such
    trial dominates on their values, lowest error first: what Optuna's ``best_trials`` holds."""
    feasible = [t for t in trials if t.state == TrialState.COMPLETE and t.values
                and all(v <= 0 for v in t.constraints.values())]
    if not feasible:
        return []
    front = fronts(np.array([t.values for t in feasible], dtype=float))
    return sorted((t for t, level in zip(feasible, front) if level == 0), key=lambda t: (t.values[0], t.number))


def objective_names(study: optuna.Study) -> list[str]:
    """The names of a study's objectives, in the order of its values (``[study] objectives``, as recorded)."""
    return study.user_attrs.get(records.STUDY_OBJECTIVES) or [f"objective {i}" for i in range(len(study.directions))]


def front_records(study: optuna.Study) -> list[dict[str, Any]]:
    """``automl best`` on a study of several objectives: each front member's record, with its objectives by
    name."""
    names = objective_names(study)
    shown = []
    for trial in pareto_front(study.get_trials(deepcopy=False)):
        record = records.trial_record(trial)
        record["objectives"] = dict(zip(names, trial.values))
        record["n_seeds"] = 1
        shown.append(record)
    return shown


def rung_objectives(trial: FrozenTrial | Any) -> dict[int, list[float]]:
    """A trial's objectives at each rung it reached (its :data:`ATTR_RUNG_OBJECTIVES`), by rung."""
    return {int(rung): [float(v) for v in values]
            for rung, values in trial.user_attrs.get(ATTR_RUNG_OBJECTIVES, {}).items()}


def _objectives_at(study: optuna.Study, rung: int, number: int) -> list[tuple[int, list[float]]]:
    """(number, objectives) of the other trials at ``rung`` (running, pruned or complete), NaN errors left out."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    found = []
    for other in study.get_trials(deepcopy=False, states=states):
        values = rung_objectives(other).get(rung)
        if other.number != number and values is not None and not math.isnan(values[0]):
            found.append((other.number, values))
    return found


__all__ = ["ATTR_RUNG_OBJECTIVES", "ParetoDecision", "ParetoPruner", "ParetoReport", "dominance", "front_records",
           "fronts", "objective_names", "pareto_front", "rung_objectives"]
