"""Transient database errors (a dropped connection, a serialisation failure, a deadlock) retried with back-off.

A worker's every database call, automl's own and Optuna's (through ``RetryingStorage`` in
``automl.storage.optuna_adapter``, which reaches into Optuna's private calls), goes through :func:`with_retry`, so a
connection cut in the middle of a statement or a transaction costs a retry, not the trial. A
database that stays out of reach for longer than :data:`RETRY_SECONDS` ends the worker with one
line (:class:`DatabaseLost`); its trial is then recovered like a dead worker's.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, TypeVar

import sqlalchemy.exc

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
            if isinstance(exc, UserError) or not is_transient(exc):
                raise  # a UserError was raised from the database's error on purpose: no wait mends it
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


__all__ = ["DatabaseLost", "ENV_RETRY_SECONDS", "RETRY_SECONDS", "is_transient", "retry_seconds", "retrying",
           "with_retry"]
