"""`automl confirm`: the K best trials of a study trained again over paired seeds and ranked by their mean, so
that the winner of a search is not merely its luckiest run (the winner's curse)."""

from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial

from automl.errors import UserError
from automl.study import records
from automl.study.compare import Arm, arm_summary, completed_cells, run_budget
from automl.study.runner import PreparedStudy


def confirm_name(name: str) -> str:
    """The Optuna study that holds the retrained trials of study ``name``."""
    return f"{name}-confirm"


def top_arms(study: optuna.Study, top: int) -> list[Arm]:
    """The ``top`` best completed trials of ``study`` as arms: each its tricks and every parameter it had."""
    best = records.best_trials(study, top)
    if not best:
        raise UserError(f"study {study.study_name!r} has no completed trial to confirm; run it first")
    return [Arm(f"trial-{t.number}", tuple(t.user_attrs.get(records.ATTR_TRICKS, [])), dict(t.params))
            for t in best]


def confirm(prepared: PreparedStudy, study: optuna.Study, top: int, seeds: int, *,
            on_queued: Any = None, on_trial: Any = None) -> dict[str, Any]:
    """Train the ``top`` best trials at ``seeds`` paired seeds at the study's trial budget (only the cells
    missing), rank them by mean, and record the ranking on the study (``records.STUDY_CONFIRMED``)."""
    arms = top_arms(study, top)
    cells = run_budget(prepared, arms, prepared.trial_budget, seeds, on_queued=on_queued, on_trial=on_trial,
                       name=confirm_name(prepared.name))
    done = completed_cells(cells, seeds)
    trials = {f"trial-{t.number}": t for t in records.best_trials(study, top)}
    result = {"study": prepared.name, "confirm_study": cells.study_name, "budget": str(prepared.trial_budget),
              "seeds": seeds, "ranking": ranking(arms, done, trials)}
    study.set_user_attr(records.STUDY_CONFIRMED, result)
    return result


def ranking(arms: Sequence[Arm], done: dict[str, dict[int, FrozenTrial]],
            trials: dict[str, FrozenTrial]) -> list[dict[str, Any]]:
    """The arms by their mean over seeds, lowest first (an arm without results last), each beside the value
    its original trial had; ``rank_in_search`` is where the search had put it."""
    rows = []
    for search_rank, arm in enumerate(arms, 1):
        row = arm_summary(arm, done.get(arm.name, {}))
        row.update(trial=trials[arm.name].number, search_value=trials[arm.name].value, rank_in_search=search_rank)
        rows.append(row)
    rows.sort(key=lambda r: (r["mean"] is None, r["mean"] if r["mean"] is not None else 0.0, r["rank_in_search"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows


__all__ = ["confirm", "confirm_name", "ranking", "top_arms"]
