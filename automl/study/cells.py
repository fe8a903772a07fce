"""The cells of a comparison: each (arm, seed) at one budget is one trial of that budget's Optuna study, queued
with the arm's parameters and the seed index, and trained by the ordinary worker loop.

Each budget is one Optuna study, ``<name>-compare-<budget>``, in the study's database; each cell is one trial
queued with the arm's parameters and the seed index (``records.ATTR_COMPARE_SEED``), run by the ordinary worker
loop, so the ledger, recovery and retries apply and a second run trains only the missing cells.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl import records
from automl.budget import Budget
from automl.errors import UserError
from automl.storage import database_exists, open_storage
from automl.storage.ledger import Ledger
from automl.storage.optuna_adapter import study_engine
from automl.study.arms import Arm
from automl.study.recovery import will_retry
from automl.study.runner import PreparedStudy, create_study, sampler_seed

_PRESENT = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
"""A cell with a trial in one of these states is not queued again (a running one may be a dead run's: recovery
fails and retries it)."""


def compare_name(name: str, budget: Budget) -> str:
    """The Optuna study that holds a comparison's cells at one budget."""
    return f"{name}-compare-{budget}"


def check_recipes(prepared: PreparedStudy, arms: Sequence[Arm], budgets: Sequence[Budget]) -> None:
    """Each arm's earlier cells trained the recipe the study file gives it now: one name for two recipes
    would mix them in one mean."""
    if not database_exists(prepared.storage_url):
        return  # no database yet: no earlier cells
    storage = open_storage(prepared.storage_url, create=False)  # one that will not open is said now
    recipes = {arm.name: arm.params for arm in arms}
    for budget in budgets:
        try:
            trials = storage.get_all_trials(storage.get_study_id_from_name(compare_name(prepared.name, budget)),
                                            deepcopy=False)
        except KeyError:
            continue
        for trial in trials:
            arm = trial.user_attrs.get(records.ATTR_COMPARE_ARM)
            if arm not in recipes or not trial.params or trial.params == recipes[arm]:
                continue
            key = next(k for k in sorted({*trial.params, *recipes[arm]})
                       if trial.params.get(k) != recipes[arm].get(k))
            raise UserError(f"arm {arm!r} was trained at {budget} with {key} = {trial.params.get(key)!r}, but "
                            f"{prepared.study_file.path} now gives {recipes[arm].get(key)!r}: its seeds would mix "
                            "two recipes; give the study another [study] name to compare the new ones")


def cell_of(first: FrozenTrial) -> tuple[str | None, int | None]:
    """(arm, seed index) of a trial, read off the first trial of its retry chain."""
    return first.user_attrs.get(records.ATTR_COMPARE_ARM), first.user_attrs.get(records.ATTR_COMPARE_SEED)


def _to_retry(trials: Sequence[FrozenTrial]) -> set[int]:
    """The failed trials recovery will queue again and has not yet (an interrupted cell, a dead worker's)."""
    retried = {t.system_attrs.get(records.SYS_RETRY_OF) for t in trials}
    return {t.number for t in trials if t.state == TrialState.FAIL and will_retry(t) and t.number not in retried}


def present_cells(study: optuna.Study) -> set[tuple[str | None, int | None]]:
    """The cells trained, being trained, queued, or to be retried by recovery: none of them is queued again."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    to_retry = _to_retry(trials)
    return {cell_of(by_number[records.original_number(t)]) for t in trials
            if t.state in _PRESENT or t.number in to_retry}


def queue_missing(study: optuna.Study, arms: Sequence[Arm], seeds: int | Mapping[str, int]) -> int:
    """Queue the (arm, seed) cells the study lacks, seed by seed (so a stopped run has whole seeds): the first
    ``seeds`` seeds of every arm, or of each arm as many as ``seeds`` maps its name to; how many."""
    wanted = seeds if isinstance(seeds, Mapping) else {arm.name: seeds for arm in arms}
    present = present_cells(study)
    queued = 0
    for seed in range(max(wanted.values(), default=0)):
        for arm in arms:
            if seed < wanted.get(arm.name, 0) and (arm.name, seed) not in present:
                study.enqueue_trial(arm.params, user_attrs={records.ATTR_COMPARE_ARM: arm.name,
                                                            records.ATTR_COMPARE_SEED: seed})
                queued += 1
    return queued


def budget_study(prepared: PreparedStudy, budget: Budget, *, session: int | None = None,
                 worker: int | None = None, name: str | None = None) -> tuple[PreparedStudy, optuna.Study]:
    """The study of one budget (``name``, default ``compare_name``), created or resumed: by a comparison's own
    run (``session`` None: it takes the next session), or by one of its ``--workers`` (its parent's
    ``session``, its index)."""
    cells = dataclasses.replace(prepared, name=name or compare_name(prepared.name, budget), trial_budget=budget,
                                total_budget=None, n_trials=None, search=False)
    if session is not None:
        cells.session, cells.worker = session, worker
    study = create_study(cells, new_session=session is None)
    if records.STUDY_COMPARE not in study.user_attrs:
        study.set_user_attr(records.STUDY_COMPARE, {"study": prepared.name, "budget": str(budget)})
    # Every parameter of a cell is fixed when it is queued: nothing is sampled, and a fixed recipe is never cut
    # short, whatever the study file says of its sampler and pruner.
    study.sampler = optuna.samplers.RandomSampler(seed=sampler_seed(prepared.seed, cells.session, worker))
    study.pruner = optuna.pruners.NopPruner()
    return cells, study


def record_design(study: optuna.Study, arms: Sequence[Arm], reference: Arm, seeds: int,
                  sequential: dict[str, Any] | None = None, dropped: Sequence[str] = ()) -> None:
    """Write the comparison's arms, reference and seeds (the fixed count, or the sequential design's maximum,
    with that design and the arms dropped before this budget) on the budget's study, so that `automl report`
    can rebuild the comparison from the database alone."""
    described = {**study.user_attrs[records.STUDY_COMPARE], "reference": reference.name, "seeds": seeds,
                 "arms": [{"arm": arm.name, "tricks": list(arm.tricks)} for arm in arms],
                 "sequential": sequential, "dropped": list(dropped)}
    if described != study.user_attrs[records.STUDY_COMPARE]:
        study.set_user_attr(records.STUDY_COMPARE, described)


def queue_budget(cells: PreparedStudy, study: optuna.Study, arms: Sequence[Arm],
                 seeds: int | Mapping[str, int]) -> int:
    """Queue the missing cells (``queue_missing``) and bound the study to them (``cells.n_trials``); how many
    cells are to run."""
    queue_missing(study, arms, seeds)
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials) + len(_to_retry(trials))
    # The ledger counts the trials started (a retried one gives its place to its retry): room for exactly the
    # queued ones and the retries recovery is about to queue, so the worker loop ends when the queue is empty
    # and never samples a trial of its own.
    cells.n_trials = Ledger(study_engine(study), cells.name).totals().trials + waiting
    return waiting


def completed_cells(study: optuna.Study, seeds: int) -> dict[str, dict[int, FrozenTrial]]:
    """``{arm: {seed: its completed trial}}`` over the first ``seeds`` seeds."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    done: dict[str, dict[int, FrozenTrial]] = {}
    for trial in trials:
        arm, seed = cell_of(by_number[records.original_number(trial)])
        if trial.state == TrialState.COMPLETE and arm is not None and seed is not None and seed < seeds:
            done.setdefault(arm, {})[seed] = trial
    return done


def missing_cells(done: dict[str, dict[int, FrozenTrial]], arms: Sequence[Arm], seeds: int) -> int:
    """How many of the (arm, seed) cells have no completed trial."""
    return sum(seed not in done.get(arm.name, {}) for arm in arms for seed in range(seeds))


def comparison_studies(storage: optuna.storages.BaseStorage, name: str) -> list[optuna.study.StudySummary]:
    """The budget studies `automl compare` made of study ``name`` (or of the comparison one of them belongs to),
    in budget order: seconds, then epochs, then steps, each smallest first."""
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    own = next((s.user_attrs.get(records.STUDY_COMPARE) for s in summaries if s.study_name == name), None)
    compared = own["study"] if own else name
    found = [s for s in summaries if (s.user_attrs.get(records.STUDY_COMPARE) or {}).get("study") == compared]
    return sorted(found, key=lambda s: Budget.parse(s.user_attrs[records.STUDY_COMPARE]["budget"]).sort_key)


def is_comparison(storage: optuna.storages.BaseStorage, name: str) -> bool:
    """Whether ``name`` is one budget study of a comparison, or names no study but has a comparison."""
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    if name in summaries:
        return records.STUDY_COMPARE in summaries[name].user_attrs
    return any((s.user_attrs.get(records.STUDY_COMPARE) or {}).get("study") == name for s in summaries.values())


__all__ = ["budget_study", "cell_of", "check_recipes", "compare_name", "comparison_studies", "completed_cells",
           "is_comparison", "missing_cells", "present_cells", "queue_budget", "queue_missing", "record_design"]
