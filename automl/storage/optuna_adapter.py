"""Every place automl reaches past Optuna's public API, in one adapter.

Checked against Optuna 4.0 and 5.0 (the range ``pyproject.toml`` allows starts at 4.0). Each function
says what it relies on, and falls back to the public API where Optuna changes shape.
"""

from __future__ import annotations

from typing import Any, Mapping

import optuna
import sqlalchemy


def rdb_storage(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage under a study, unwrapped: Optuna wraps an RDB storage given as a URL or an
    ``RDBStorage`` in a private ``_CachedStorage`` (``study._storage._backend``)."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def study_engine(study: optuna.Study) -> sqlalchemy.Engine:
    """The SQLAlchemy engine of a study in an RDB storage (automl's own tables live beside Optuna's)."""
    return rdb_storage(study).engine


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a running trial (``Trial._trial_id``): heartbeats and attribute writes need it."""
    return trial._trial_id


def frozen_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` of ``study`` as the database holds it now (``Study._study_id``; Optuna's cache in front
    of the storage is bypassed, so a trial another worker has just ended reads as ended)."""
    storage = rdb_storage(study)
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def set_user_attrs(study: optuna.Study, trial: optuna.Trial | int, attrs: Mapping[str, Any]) -> None:
    """Write a running trial's user attributes in one transaction, where Optuna's public API would take one
    per key; refused like ``Trial.set_user_attr`` once the trial has finished. ``trial`` may be the
    storage's trial id; a transient database error is retried (``automl.storage.retry``).

    Relies on ``RDBStorage``'s private per-attribute writer, which takes a session:
    ``_set_trial_attr_without_commit(session, model, ...)`` in Optuna 5, ``_set_trial_user_attr_without_commit
    (session, ...)`` in Optuna 4. Elsewhere (the in-memory storage, another Optuna) each key is its own write.
    """
    if not attrs:
        return
    storage = rdb_storage(study)
    tid = trial if isinstance(trial, int) else trial_id(trial)
    writer = _session_writer(storage)
    if writer is None:
        for key, value in attrs.items():
            storage.set_trial_user_attr(tid, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    from automl.storage.retry import with_retry

    def write() -> None:
        with _create_scoped_session(storage.scoped_session, True) as session:
            # A trial another worker has failed meanwhile (this one was paused) refuses the write.
            storage.check_trial_is_updatable(tid, models.TrialModel.find_or_raise_by_id(tid, session).state)
            for key, value in attrs.items():
                writer(session, tid, key, value)

    with_retry(write)


def fail_if_waiting(study: optuna.Study, tid: int) -> bool:
    """Fail trial ``tid`` only if it is still WAITING (no worker has taken it); whether it did.

    Optuna's ``set_trial_state_values`` would fail a trial a worker has just started, so this is one
    conditional UPDATE of Optuna's ``trials`` table (its ``state`` column holds the state's name).
    """
    from datetime import datetime

    from automl.storage.retry import with_retry

    def update() -> bool:
        with study_engine(study).begin() as connection:
            return connection.execute(sqlalchemy.text(
                "UPDATE trials SET state = 'FAIL', datetime_complete = :now "
                "WHERE trial_id = :id AND state = 'WAITING'"), {"now": datetime.now(), "id": tid}).rowcount == 1

    return with_retry(update)


def _session_writer(storage: optuna.storages.BaseStorage):
    if not isinstance(storage, optuna.storages.RDBStorage):
        return None
    if hasattr(storage, "_set_trial_attr_without_commit"):  # Optuna 5
        from optuna.storages._rdb import models

        return lambda session, tid, key, value: storage._set_trial_attr_without_commit(
            session, models.TrialUserAttributeModel, tid, key, value)
    return getattr(storage, "_set_trial_user_attr_without_commit", None)  # Optuna 4


__all__ = ["fail_if_waiting", "frozen_trial", "rdb_storage", "set_user_attrs", "study_engine", "trial_id"]
