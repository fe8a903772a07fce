"""Budget as the fidelity: a trial's rungs are complete runs at growing budgets, each from fresh weights.

With ``[study] fidelity = "budget"``, a trial trains at b/eta^(R-1), reports the run's final validation error as
rung 0, and, if the pruner keeps it, trains again from fresh weights at b/eta^(R-2), up to the trial budget b
(eta = 3 and R = 3 rungs by default: 1/9, 1/3, 1). Every run's schedule lands on its own end, so a rung sees what
a budget-relative schedule (cosine, step decay, snapshot cycles, SWA's window, FreezeOut) gives at that budget,
not a quarter of the way through it (short-horizon bias, Wu et al. 2018). With ``fidelity = "progress"`` a rung is
a point of progress through the one run, as before.

:func:`climb` is the rung loop, shared by the objective (which trains) and the benchmark's replays (which read a
table): what is reported and when the pruner is asked are the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from automl.budget import Budget

FIDELITIES = ("progress", "budget")
BUDGET_RUNGS = 3
"""Complete runs a trial may train with the budget fidelity: b/9, b/3 and b at eta = 3."""


def rung_budgets(budget: Budget, rungs: int, eta: int) -> list[Budget]:
    """The budgets of a trial's rungs, smallest first, the last the trial budget; a budget in steps is rounded
    to whole steps (at least one), and a rung that rounds to its neighbour's budget is dropped."""
    budgets: list[Budget] = []
    for k in range(rungs - 1, -1, -1):
        amount = budget.amount / eta ** k
        if budget.unit == "steps":
            amount = max(1, round(amount))
        candidate = Budget(amount, budget.unit)
        if not budgets or candidate.amount > budgets[-1].amount:
            budgets.append(candidate)
    return budgets


@dataclass
class Climb:
    """How a trial's rungs went: the last rung it reached, its value, and whether the pruner stopped it."""

    rung: int = -1
    value: float | None = None
    pruned: bool = False
    results: list[Any] = field(default_factory=list)
    """What each run returned, in rung order (a rung taken from ``done`` has None)."""


def climb(trial: Any, budgets: list[Budget], run_at: Callable[[int, Budget], tuple[float, Any]], *,
          done: Mapping[int, float] | None = None, start: int = 0,
          should_prune: Callable[[], bool] | None = None) -> Climb:
    """Train ``trial`` rung by rung: ``run_at(rung, budget)`` trains one complete run and returns (its
    validation error, what the caller keeps of it); each value is reported at step ``rung``, and the pruner is
    asked after every rung but the last. ``done``: values an earlier attempt at this trial reported (a retry
    after a crash): reported again, not trained again. ``start``: the first rung to train (a repeat of a
    configuration starts at the last). ``should_prune``: asks the pruner (default ``trial.should_prune``; the
    ranks of a trial share rank 0's answer)."""
    done = done or {}
    should_prune = should_prune or trial.should_prune
    decided = {rung for rung in done if rung + 1 in done}  # kept by the pruner: the next rung was reported
    climbed = Climb()
    last = len(budgets) - 1
    for rung in range(start, len(budgets)):
        if rung in done:
            value, kept = done[rung], None
        else:
            value, kept = run_at(rung, budgets[rung])
        climbed.rung, climbed.value = rung, value
        climbed.results.append(kept)
        trial.report(value, rung)
        if rung < last and rung not in decided and should_prune():
            climbed.pruned = True
            break
    return climbed


__all__ = ["BUDGET_RUNGS", "FIDELITIES", "Climb", "climb", "rung_budgets"]
