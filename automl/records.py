"""What a trial records and how it reads back: the attribute keys, the state names, which trial is best.

Everything that writes, shows or exports trials (the worker, the objective, the progress display,
``automl studies|trials|best``, the report, export) takes its keys and rules from here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

from automl.errors import UserError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial, TrialState

# -- how a trial ends -------------------------------------------------------------------------------
COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"
ENDINGS = (COMPLETE, PRUNED, FAILED)
"""How a trial can end: its state as automl names it, what ``Trick.on_trial_end`` is told, and the ledger's
settled states."""
TRICK_ERROR = "trick_error"
"""The ``end_reason`` of a trial failed by an exception from one of its tricks."""
MODEL_ERROR = "model_error"
"""The ``end_reason`` of a trial failed by an exception from the task's model (its forward, or a module in it)."""
RANK_FAILED = "rank_failed"
"""On a rank other than 0, the end of a trial that another rank left: rank 0 records the reason that rank gave."""

# -- the trial's user attributes -------------------------------------------------------------------
ATTR_TRICKS = "tricks"
ATTR_SPENT = "spent_seconds"
ATTR_END = "end_reason"
ATTR_DETAIL = "end_detail"
ATTR_SEED = "seed"
ATTR_OPTIONS = "options"
"""The fixed options the study file gave each enabled trick."""
ATTR_UNAVAILABLE = "unavailable"
"""The tricks that could not be offered to the trial, and why."""
# What `automl export` needs to rebuild a trial: the budget it ran under (the command line may have
# overridden the file's) and the digest of the study config it ran with (which stored text, which variant).
ATTR_BUDGET = "budget"
ATTR_CONFIG = "config_sha256"
ATTR_STEPS = "steps"
ATTR_MODEL = "model_artifact"
ATTR_WEIGHTS = "weights_artifacts"
"""``{name: artifact id}`` of the extra weights the trial's tricks kept (snapshots, averages)."""
ATTR_INFERENCE_MS = "inference_ms_per_1000"
"""Measured milliseconds to predict 1000 images on ``ATTR_INFERENCE_DEVICE``, ensembles' every pass included."""
ATTR_INFERENCE_FLOPS = "inference_flops_per_image"
ATTR_INFERENCE_DEVICE = "inference_device"
ATTR_COMPARE_ARM = "compare_arm"
"""Set on an `automl compare` cell when it is queued: the name of the arm (the fixed recipe) it trains."""
ATTR_COMPARE_SEED = "compare_seed"
"""Set on an `automl compare` cell when it is queued: its seed index s. The cell trains with
``training_seed(study seed, s)`` whatever its trial number, so every arm at seed s starts from the same
weights and sees the same data order (the pairing of the comparison)."""
ATTR_DATA_WAIT = "data_wait_fraction"
"""The fraction of the trial's training time spent waiting for batches of data."""
ATTR_CHECKPOINT = "checkpoint"
ATTR_CHECKPOINT_FAILED = "checkpoint_failed"
"""Why a trial stopped writing checkpoints (its disk filled up, say): it went on without them."""
"""The trial's latest checkpoint in the artifact store: ``{"artifact", "step", "progress", "spent_seconds"}``, its
own seconds spent when it was saved (see ``automl.study.resume``)."""
ATTR_RESUMED = "resumed_from"
"""A retry that resumed: ``{"trial", "step", "progress", "spent_seconds"}`` of the checkpoint it went on from."""
ATTR_LOST = "lost_seconds"
"""A resumed retry: the seconds the trial it re-runs spent after its checkpoint (charged, and trained again)."""
ATTR_RESUME_REFUSED = "resume_refused"
"""Why a retry did not resume from the checkpoint it found, and trained from scratch instead."""
ATTR_TRAIN_SECONDS, ATTR_EVAL_SECONDS = "train_seconds", "eval_seconds"
"""Seconds the trial spent training and evaluating (their sum, with checkpoints, is ``ATTR_SPENT``)."""
ATTR_EPOCHS, ATTR_PROGRESS = "epochs", "progress"
ATTR_TRAIN_LOSS = "train_loss"
ATTR_VAL_ERROR_MODEL = "val_error_model"
"""The validation error of the trained model alone, where the trial's value is a trick's prediction (an ensemble)."""
INFERENCE_COST = "inference_cost"
"""The ``Run.attrs`` key of the forward passes one prediction costs (1 unless a trick ensembles)."""
PLANNED_INFERENCE_COST = "planned_inference_cost"
"""The ``Run.attrs`` key a trick whose cost grows as it trains (an ensemble) sets in ``setup``: the forward
passes one prediction will cost once trained, what a study measures before training (``automl.study.costs``)."""
ATTR_REPEAT_OF = "repeat_of"
"""A repeat of a configuration at a new seed (intensification): the number of the trial it repeats."""
ATTR_RUNG_BUDGETS = "rung_budgets"
"""The budgets of the complete runs a trial trained, one per rung it reached (budget fidelity), smallest first."""
ATTR_RUNG_SPENT = "rung_spent_seconds"
"""The device seconds of each of those runs."""
ATTR_VAL_SIZE = "val_size"
"""The images of the validation split the trial's value counts its errors over: the n of its Wilson interval."""

OWN_ATTRS = frozenset({ATTR_TRICKS, ATTR_SPENT, ATTR_END, ATTR_DETAIL, ATTR_SEED, ATTR_OPTIONS, ATTR_UNAVAILABLE,
                       ATTR_BUDGET, ATTR_CONFIG, ATTR_COMPARE_ARM, ATTR_COMPARE_SEED, ATTR_STEPS, ATTR_MODEL,
                       ATTR_WEIGHTS, ATTR_DATA_WAIT, ATTR_CHECKPOINT, ATTR_CHECKPOINT_FAILED, ATTR_RESUMED, ATTR_LOST,
                       ATTR_RESUME_REFUSED,
                       ATTR_TRAIN_SECONDS, ATTR_EVAL_SECONDS, ATTR_EPOCHS, ATTR_PROGRESS, ATTR_TRAIN_LOSS,
                       ATTR_VAL_ERROR_MODEL, ATTR_REPEAT_OF, ATTR_RUNG_BUDGETS, ATTR_RUNG_SPENT})
"""The user attributes automl writes itself: a trick's ``run.attrs`` may not use these keys."""


def trick_sources(plugins: list[dict[str, str]]) -> list[dict[str, str]]:
    """The tricks' entries of a study source's ``plugins`` (the data set's has ``dataset`` in place of ``trick``)."""
    return [p for p in plugins if "trick" in p]


def attrs_problem(attrs: dict[str, Any]) -> str | None:
    """Why a run's ``attrs`` cannot be stored with its trial as they are (a key of automl's own, or a value
    that stopped being JSON after it was set, e.g. a list a tensor was appended to), or None."""
    for key, value in attrs.items():
        if key in OWN_ATTRS:
            return f"run.attrs[{key!r}] is a key automl records itself; prefix it with the trick's name"
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            return f"run.attrs[{key!r}] = {value!r} cannot be stored with the trial as JSON ({exc})"
    return None


# -- what Optuna records itself, in the system attributes ------------------------------------------
SYS_RETRY_HISTORY = "retry_history"
"""Set by Optuna's retry callback on a retry: the numbers of the trials it re-runs, the first first. Read it
with ``retry_history``."""
SYS_RETRY_OF = "failed_trial"
"""Optuna's retry callback keeps here the first trial of the chain; automl's retries (``automl.study.recovery``)
the trial they directly re-run, whose checkpoint they go on from: the same as the first for a first retry."""
SYS_FAIL_REASON = "fail_reason"

# -- the study's user attributes -------------------------------------------------------------------
STUDY_FILE, STUDY_DATASET, STUDY_MODEL = "study_file", "dataset", "model"
STUDY_DATASET_ARGS, STUDY_MODEL_ARGS = "dataset_args", "model_args"
"""The task's arguments: part of its identity, as its data set's and model's names are."""
STUDY_MODEL_INPUT = "model_input"
"""``[in_channels, num_classes]`` the study's model is built for: what rebuilds it without the data (export)."""
STUDY_OBJECTIVES = "objectives"
"""A study of several objectives: their names, in the order of its values (``[study] objectives``)."""
STUDY_DATA_LOAD = "data_load"
"""``{loader, decode_seconds}`` of the last run's data set: how its images reach the device, and the seconds spent
decoding them before any trial (charged to none)."""
STUDY_COMPARE = "compare"
"""On the study of one budget of `automl compare`: ``{"study": the compared study's name, "budget": "20s"}``."""
STUDY_CONFIRMED = "confirmed"
"""The ranking `automl confirm` made: the best trials trained again at paired seeds (see study/confirm.py)."""
STUDY_PLUGINS = "plugins"
"""``{trick: source}``: where each trick the study has searched came from (``"<distribution> <version>:
<module>"`` or a file path), so that a resume with a trick from elsewhere is refused (see ``automl run``)."""

# Keyed by the names of Optuna's states, so that `import automl` (which every plugin does) and `automl --help`
# do not load Optuna: the functions below that need it import it when called.
STATE_NAMES = {"COMPLETE": COMPLETE, "PRUNED": PRUNED, "FAIL": FAILED, "RUNNING": "running", "WAITING": "waiting"}
"""Every trial state as automl names it (the default ``end_reason`` of a trial that recorded none)."""
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
"""The names of the Optuna states a trial ends in (``trial.state.name in FINISHED``)."""


def state_name(state: TrialState) -> str:
    """An Optuna trial state as automl names it."""
    return STATE_NAMES[state.name]


def training_seed(study_seed: int, number: int) -> int:
    """The seed a trial trains with: the study's seed plus the trial's (original) number."""
    return study_seed + number


def seed_index(first: FrozenTrial) -> int:
    """What a trial's training seed derives from, read off the first trial of its retry chain: the seed index
    an `automl compare` cell was queued with, else that trial's number."""
    return first.user_attrs.get(ATTR_COMPARE_SEED, first.number)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The trials a retry re-runs, the first first, as Optuna's retry callback reads them (empty for a trial
    that is no retry). Read, not copied: the list is the trial's own."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
    except ImportError:  # its name before Optuna 4.9
        from optuna.storages import RetryFailedTrialCallback as Retry
    with warnings.catch_warnings():
        # Optuna marks its retry readers experimental: a notice for programmers, not for automl's user.
        warnings.simplefilter("ignore", ExperimentalWarning)
        return Retry.retry_history(trial)


def original_number(trial: FrozenTrial) -> int:
    """The trial's own number, or for a retry (of a trial whose worker died) the number of the trial it
    re-runs, so the retry trains with the same seed as well as the same parameters."""
    # Not Optuna's retried_trial_number: it reads SYS_RETRY_OF, which automl sets to the trial just before
    # (see there), the first only for a first retry.
    history = retry_history(trial)
    return history[0] if history else trial.number


def error_of(trial: FrozenTrial) -> float | None:
    """A trial's validation error: its value, or the first of its values in a study of several objectives
    (``[study] objectives``, the error always first); None for a trial without one."""
    return trial.values[0] if trial.values else None


def best_key(trial: FrozenTrial) -> tuple[float, int]:
    """The order of "best": lowest validation error, the earlier trial on a tie."""
    return error_of(trial), trial.number


def ranked(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials with a value, best first."""
    return sorted((t for t in trials if t.state.name == "COMPLETE" and t.values), key=best_key)


def best_of(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The best completed trial, or None when none has completed."""
    done = ranked(trials)
    return done[0] if done else None


def best_trials(study: optuna.Study, top: int) -> list[FrozenTrial]:
    from optuna.trial import TrialState

    return ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))[:top]


def end_reason(trial: FrozenTrial) -> str:
    """Why the trial ended as it recorded it, else the name of its state."""
    return trial.user_attrs.get(ATTR_END, state_name(trial.state))


def load_study(name: str, storage: optuna.storages.BaseStorage, shown_url: str) -> optuna.Study:
    """The study called ``name``; a missing one raises with the names that do exist."""
    import optuna

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
        "n_complete": sum(t.state.name == "COMPLETE" for t in trials),
        "n_pruned": sum(t.state.name == "PRUNED" for t in trials),
        "n_failed": sum(t.state.name == "FAIL" for t in trials),
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "spent_seconds": round(sum(t.user_attrs.get(ATTR_SPENT, 0.0) for t in trials), 3),
        "dataset": summary.user_attrs.get(STUDY_DATASET),
        "model": summary.user_attrs.get(STUDY_MODEL),
        "started": summary.datetime_start.isoformat(timespec="seconds") if summary.datetime_start else None,
    }


_OWN_FIELDS = (ATTR_TRICKS, ATTR_SPENT, ATTR_END, ATTR_DETAIL, ATTR_SEED, ATTR_VAL_SIZE, ATTR_DATA_WAIT)
"""The user attributes a trial record shows as fields of their own, not under ``user_attrs``."""


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as JSON-able data, with its parameters grouped by trick."""
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in trial.params.items():
        group, _, param = name.partition(".")
        grouped.setdefault(group, {})[param or name] = value
    spent = trial.user_attrs.get(ATTR_SPENT)
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": error_of(trial),
        "values": trial.values,
        "tricks": trial.user_attrs.get(ATTR_TRICKS, []),
        "params": grouped,
        "spent_seconds": None if spent is None else round(spent, 3),
        "end_reason": end_reason(trial),
        "end_detail": trial.user_attrs.get(ATTR_DETAIL) or trial.system_attrs.get(SYS_FAIL_REASON),
        "seed": trial.user_attrs.get(ATTR_SEED),
        "retry_of": trial.system_attrs.get(SYS_RETRY_OF),
        "user_attrs": {k: v for k, v in trial.user_attrs.items() if k not in _OWN_FIELDS},
        "data_wait_fraction": trial.user_attrs.get(ATTR_DATA_WAIT),
        "val_size": trial.user_attrs.get(ATTR_VAL_SIZE),
        "val_ci": val_interval(error_of(trial), trial.user_attrs.get(ATTR_VAL_SIZE)),
    }


def val_interval(value: float | None, val_size: int | None) -> list[float] | None:
    """The Wilson 95% interval of a validation error over ``val_size`` images, as [low, high]; None when
    either is unknown (a trial without a value, or recorded before automl kept the split's size)."""
    if value is None or not val_size:
        return None
    from automl.stats import error_interval

    return list(error_interval(value, val_size))


def mark_ties(records: list[dict[str, Any]], completed: Iterable[dict[str, Any]], interval: str = "val_ci") -> None:
    """Set ``tied_with_best`` on each of ``records`` (best first) and ``tied_trials`` on the first one: the
    other ``completed`` records whose ``interval`` (a trial's validation interval, or a configuration's
    ``mean_ci`` over seeds) overlaps the best one's, so that no data tells them from it. Without the best one's
    interval, nothing is marked tied (``tied_trials`` is None)."""
    from automl.stats import overlap

    if not records:
        return
    best = records[0]

    def tied(record: dict[str, Any]) -> bool:
        return (record["number"] != best["number"] and best[interval] is not None
                and record[interval] is not None and overlap(record[interval], best[interval]))

    for record in records:
        record["tied_with_best"] = tied(record)
        record["tied_trials"] = None
    if best[interval] is not None:
        best["tied_trials"] = [r["number"] for r in completed if tied(r)]


def trick_params(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The parameters of the enabled tricks only, with ``[train]``'s and the resource owners'.

    A trick the trial left off suggested nothing but its enabled flag (parameters are define-by-run),
    so a group with nothing beside that flag is shown only when its trick ran.
    """
    shown = {}
    for group, params in record["params"].items():
        rest = {k: v for k, v in params.items() if k != "enabled"}
        if rest or group in record["tricks"]:
            shown[group] = rest
    return shown
