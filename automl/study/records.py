"""Read studies back from storage as plain records: what `studies`, `trials` and `best` print."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.errors import UserError
from automl.space import OWNER_PREFIX
from automl.study.objective import ATTR_DETAIL, ATTR_END, ATTR_SEED, ATTR_SPENT, ATTR_TRICKS
from automl.train.settings import SEARCH_PREFIX


def load_study(name: str, storage: optuna.storages.BaseStorage, shown_url: str) -> optuna.Study:
    """The study called ``name``; a missing one raises with the names that do exist."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
        raise UserError(f"no study named {name!r} in {shown_url}; studies there: {', '.join(names) or '(none)'}") from None


def study_record(summary: optuna.study.StudySummary, storage: optuna.storages.BaseStorage) -> dict[str, Any]:
    trials = storage.get_all_trials(storage.get_study_id_from_name(summary.study_name), deepcopy=False)
    best = summary.best_trial
    return {
        "name": summary.study_name,
        "n_trials": len(trials),
        "n_complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "n_failed": sum(t.state == TrialState.FAIL for t in trials),
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "spent_seconds": round(sum(t.user_attrs.get(ATTR_SPENT, 0.0) for t in trials), 3),
        "dataset": summary.user_attrs.get("dataset"),
        "model": summary.user_attrs.get("model"),
        "started": summary.datetime_start.isoformat(timespec="seconds") if summary.datetime_start else None,
    }


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as JSON-able data, with its parameters grouped by trick."""
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in trial.params.items():
        group, _, param = name.partition(".")
        grouped.setdefault(group, {})[param or name] = value
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "tricks": trial.user_attrs.get(ATTR_TRICKS, []),
        "params": grouped,
        "spent_seconds": _round(trial.user_attrs.get(ATTR_SPENT)),
        "end_reason": trial.user_attrs.get(ATTR_END, _default_reason(trial)),
        "end_detail": trial.user_attrs.get(ATTR_DETAIL) or trial.system_attrs.get("fail_reason"),
        "seed": trial.user_attrs.get(ATTR_SEED),
        "retry_of": trial.system_attrs.get("failed_trial"),  # set by Optuna on the retry of a dead worker's trial
        "user_attrs": {k: v for k, v in trial.user_attrs.items()
                       if k not in (ATTR_TRICKS, ATTR_SPENT, ATTR_END, ATTR_DETAIL, ATTR_SEED)},
    }


def best_trials(study: optuna.Study, top: int) -> list[FrozenTrial]:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return sorted(done, key=lambda t: (t.value, t.number))[:top]


def trick_params(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The parameters of the enabled tricks only (a disabled trick keeps just its enabled flag)."""
    return {group: {k: v for k, v in params.items() if k != "enabled"}
            for group, params in record["params"].items()
            if group in record["tricks"] or group in (SEARCH_PREFIX, OWNER_PREFIX)}


def _default_reason(trial: FrozenTrial) -> str:
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
            TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[trial.state]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
