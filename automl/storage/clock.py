"""The database's clock: every worker on every machine dates heartbeats and reservations by it, never by its own.

``utc_now()`` is a SQL expression evaluated by the server (naive UTC, as the ``DateTime`` columns of
automl's tables hold); ``database_now`` reads it, for cut-offs such as "no heartbeat for 60 s".
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement


class utc_now(FunctionElement):  # noqa: N801 - a SQL function, named as SQL names them
    """The server's current time in UTC, without a time zone."""

    type = sa.DateTime()
    inherit_cache = True


@compiles(utc_now, "postgresql")
def _utc_now_postgresql(element, compiler, **kw) -> str:
    # clock_timestamp(), not now(): now() is the start of the transaction, frozen while it lasts.
    return "(clock_timestamp() AT TIME ZONE 'UTC')"


@compiles(utc_now, "sqlite")
def _utc_now_sqlite(element, compiler, **kw) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"  # UTC, with milliseconds (CURRENT_TIMESTAMP has seconds)


@compiles(utc_now)
def _utc_now_default(element, compiler, **kw) -> str:
    return "CURRENT_TIMESTAMP"


def database_now(connection: sa.Connection) -> datetime:
    """The database's current time, naive UTC."""
    value = connection.execute(sa.select(utc_now())).scalar_one()
    if isinstance(value, str):  # SQLite hands the text back when the expression's type is not applied
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


__all__ = ["database_now", "utc_now"]
