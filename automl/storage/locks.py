"""Locks held in the database, so that workers on any machine take turns at work that must not run twice at once.

On PostgreSQL these are advisory locks held by one connection: a worker that dies drops its
connection and with it the lock, so no lock outlives its holder. SQLite allows one writer at a
time already and several workers on it are refused (``check_workers``), so there they are no-ops.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator

import sqlalchemy as sa


SCHEMA_LOCK = "automl-schema"
"""Held while automl's or Optuna's tables are created or upgraded."""


def lock_key(name: str) -> int:
    """A signed 64-bit key for ``name``, as ``pg_advisory_lock`` takes (every holder derives the same)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def advisory_lock(engine: sa.Engine, name: str) -> Iterator[None]:
    """Hold the database-wide lock ``name`` for the block; waits while another connection holds it."""
    if engine.dialect.name != "postgresql":
        yield
        return
    from automl.storage.retry import is_transient, with_retry

    key = lock_key(name)
    connection = with_retry(_locked, engine, key)
    try:
        yield
    finally:
        try:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
        except sa.exc.DBAPIError as exc:
            if not is_transient(exc):
                raise
            # The connection was cut: the server released the lock with it.
        finally:
            connection.close()


def _locked(engine: sa.Engine, key: int) -> sa.Connection:
    connection = engine.connect()
    try:
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        connection.commit()
    except BaseException:
        connection.close()
        raise
    return connection


__all__ = ["SCHEMA_LOCK", "advisory_lock", "lock_key"]
