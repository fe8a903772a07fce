"""Every place automl reaches past Optuna's public API, in one adapter.

Checked against Optuna 4.0 and 5.0 (the range ``pyproject.toml`` allows starts at 4.0). Each function
says what it relies on, and falls back to the public API where Optuna changes shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import optuna
import sqlalchemy
from optuna.trial import TrialState

from automl.storage.retry import retrying, with_retry


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


def study_id(study: optuna.Study) -> int:
    """The storage's id of a study (``Study._study_id``): what the storage's calls by trial number need."""
    return study._study_id


def frozen_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` of ``study`` as the database holds it now (Optuna's cache in front of the storage is
    bypassed, so a trial another worker has just ended reads as ended)."""
    storage = rdb_storage(study)
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id(study), number))


def max_name_length() -> int:
    """The longest study name Optuna's ``studies`` table indexes (``MAX_INDEXED_STRING_LENGTH`` of its private
    models); a longer one fails on PostgreSQL."""
    from optuna.storages._rdb.models import MAX_INDEXED_STRING_LENGTH

    return MAX_INDEXED_STRING_LENGTH


def optuna_migrations() -> Path:
    """The folder of Optuna's own alembic migrations of its tables, inside its private ``_rdb`` package."""
    import optuna.storages._rdb

    return Path(optuna.storages._rdb.__file__).parent / "alembic"


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


_STORAGE_CALLS = ("create_new_study", "delete_study", "get_all_studies", "get_all_trials", "get_best_trial",
                  "get_n_trials", "get_study_directions", "get_study_id_from_name", "get_study_name_from_id",
                  "get_study_system_attrs", "get_study_user_attrs", "get_trial",
                  "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
                  "get_trial_params", "get_trial_system_attrs", "get_trial_user_attrs", "record_heartbeat",
                  "set_study_system_attr", "set_study_user_attr", "set_trial_intermediate_value",
                  "set_trial_param", "set_trial_system_attr", "set_trial_user_attr")
"""The storage calls Optuna makes for a study (each one transaction of its own), retried as they are."""
_PRIVATE_CALLS = ("_create_new_trial", "_get_best_trial_id", "_get_trials", "_set_trial_param")
"""What Optuna's own cache in front of an RDB storage (``_CachedStorage``) calls instead of the public ones."""


class RetryingStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, each of whose calls is retried on a transient error (see :func:`with_retry`)."""

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        try:
            return with_retry(super().set_trial_state_values, trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            # A retry after a commit whose answer was lost finds the trial already as it was asked to be.
            if self.get_trial(trial_id).state == state and state.is_finished():
                return True
            raise


for _name in _STORAGE_CALLS + _PRIVATE_CALLS:
    if hasattr(optuna.storages.RDBStorage, _name):  # the private ones as Optuna 4 and 5 have them
        setattr(RetryingStorage, _name, retrying(getattr(optuna.storages.RDBStorage, _name)))


__all__ = ["RetryingStorage", "fail_if_waiting", "frozen_trial", "max_name_length", "optuna_migrations", "rdb_storage",
           "set_user_attrs", "study_engine", "study_id", "trial_id"]
