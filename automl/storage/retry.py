"""Transient database errors (a dropped connection, a serialisation failure, a deadlock) retried with back-off.

A worker's every database call, automl's own and Optuna's, goes through :func:`with_retry`, so a
connection cut in the middle of a statement or a transaction costs a retry, not the trial. A
database that stays out of reach for longer than :data:`RETRY_SECONDS` ends the worker with one
line (:class:`DatabaseLost`); its trial is then recovered like a dead worker's.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, TypeVar

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from automl.errors import UserError

RETRY_SECONDS = 60.0
"""How long a worker keeps retrying a database that does not answer before it stops."""
ENV_RETRY_SECONDS = "AUTOML_DB_RETRY_SECONDS"
"""Overrides :data:`RETRY_SECONDS` (tests use a short one)."""
FIRST_WAIT, LONGEST_WAIT = 0.1, 5.0
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"}
"""Serialisation failure, deadlock, server shutting down or restarting, connection exceptions."""
_PERMANENT_CLASSES = ("28", "3D")
"""SQLSTATE classes of invalid authorisation and of an unknown database."""

T = TypeVar("T")


class DatabaseLost(UserError):
    """The database stayed out of reach for longer than the retry bound: the worker stops."""

    exit_code = 1


def retry_seconds() -> float:
    text = os.environ.get(ENV_RETRY_SECONDS)
    return float(text) if text else RETRY_SECONDS


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from (Optuna wraps SQLAlchemy's), is worth a retry."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlalchemy.exc.DBAPIError) and _transient_dbapi(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _transient_dbapi(exc: sqlalchemy.exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    if type(exc.orig).__module__.startswith("sqlite3"):
        # A read-only or missing file is an OperationalError too, and no retry mends it.
        return "database is locked" in str(exc.orig)
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    if sqlstate in _TRANSIENT_SQLSTATES:
        return True
    # An OperationalError is the connection or the server failing (refused, reset, closed, not accepting
    # connections now), except a refused login or a database that does not exist: no wait mends those.
    return isinstance(exc, sqlalchemy.exc.OperationalError) and not sqlstate.startswith(_PERMANENT_CLASSES)


def with_retry(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, again after each transient error, with doubling waits, for at most
    :func:`retry_seconds`; then :class:`DatabaseLost`."""
    bound = retry_seconds()
    started = time.monotonic()
    wait = FIRST_WAIT
    while True:
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() - started + wait > bound:
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise DatabaseLost(f"lost the study's database for over {bound:g} s ({reason}); check the "
                                   "server and run the same command again: the running trial is recovered "
                                   "and retried") from None
            time.sleep(wait)
            wait = min(2 * wait, LONGEST_WAIT)


def retrying(method: Callable[..., T]) -> Callable[..., T]:
    """A method whose every call goes through :func:`with_retry`."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return with_retry(method, *args, **kwargs)

    return wrapper


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


__all__ = ["DatabaseLost", "ENV_RETRY_SECONDS", "RETRY_SECONDS", "RetryingStorage", "is_transient", "retry_seconds",
           "retrying", "with_retry"]
