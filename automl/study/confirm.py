"""The winner's curse: the best trials of a study trained again at the same seeds, ranked by their mean.

The best single trial of a search is, more often than not, a lucky draw of its seed as much as a
good configuration. ``confirm`` exports each of the ``top`` best trials as ``automl export`` does,
trains it ``seeds`` times as ``automl train`` does (at the trial's own budget), with the *same*
seeds for every trial (paired), and ranks the trials by their mean validation error over those
seeds, with a 95% interval. The ranking is recorded in the study (user attribute
``confirmed``) for ``automl best --confirmed``. Validation is the split the study tuned on: the
test error of each seed is shown beside it, never used to rank.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

from automl import stats
from automl.errors import UserError
from automl.host import Host
from automl.storage import open_storage
from automl.storage.urls import mask_url
from automl.study.pareto import pareto_front
from automl.study.export import export_trial
from automl import records
from automl.records import STUDY_CONFIRMED, best_trials, load_study
from automl.seeds import DEFAULT_SEEDS, MIN_SEEDS
from automl.study.standalone import prepare_run, train_seeds


def check_request(top: int, seeds: int) -> None:
    if seeds < MIN_SEEDS:
        raise UserError(f"--seeds {seeds}: confirming needs at least {MIN_SEEDS} seeds (no interval comes from "
                        f"one); give --seeds {DEFAULT_SEEDS} or more")
    if top < 1:
        raise UserError(f"--top {top}: give 1 or more")


def confirm(url: str, study_name: str, host: Host, *, top: int, seeds: int,
            on_trial: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Retrain the ``top`` best trials at ``seeds`` paired seeds; the ranking, also recorded in the study."""
    check_request(top, seeds)
    shown = mask_url(url)
    study = load_study(study_name, open_storage(url, create=False), shown)
    # A study of several objectives confirms the members of its Pareto front, lowest error first.
    trials = pareto_front(study.get_trials(deepcopy=False))[:top] if len(study.directions) > 1 else \
        best_trials(study, top)
    if not trials:
        raise UserError(f"study {study_name!r} in {shown} has no completed trial to confirm; run it first")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for index, trial in enumerate(trials):
            if on_trial is not None:
                on_trial(index, trial.number)
            rows.append(_retrain(url, study_name, trial.number, records.error_of(trial), host, seeds, Path(folder)))
    rows.sort(key=lambda r: (r["mean"], r["trial"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    ranking = {"seeds": rows[0]["seeds"], "budget": rows[0]["budget"], "method": stats.MEAN_CI_METHOD,
               "ranking": rows}
    study.set_user_attr(STUDY_CONFIRMED, ranking)
    return ranking


def _retrain(url: str, study_name: str, number: int, value: float, host: Host, seeds: int,
             folder: Path) -> dict[str, Any]:
    """One trial, exported and trained at the study's paired seeds (its seed + k is not paired: those differ
    by trial), its models written to a scratch folder."""
    exported = export_trial(url, study_name, number, host, folder / f"trial{number}.toml")
    prepared = prepare_run(exported.path, host, seeds=seeds, out_dir=folder / f"trial{number}")
    base = prepared.loaded.run.run.data_seed  # the study's own seed: the same for every trial
    prepared.seeds = [base + k for k in range(seeds)]
    runs = train_seeds(prepared, host)
    values = [r.result.val_error for r in runs]
    mean, (low, high) = stats.mean_ci(values)
    tests = [r.result.test_error for r in runs if r.result.test_error is not None]
    return {"trial": number, "search_value": value, "tricks": prepared.replayed.names,
            "budget": str(prepared.budget), "seeds": prepared.seeds, "values": values, "mean": mean,
            "ci": [max(0.0, low), min(1.0, high)],  # a t interval knows no bounds; an error rate does
            "test_mean": statistics.fmean(tests) if tests else None}


__all__ = ["check_request", "confirm"]
