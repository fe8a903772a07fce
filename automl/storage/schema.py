"""The revision of automl's tables in a database: read it, create it at head, upgrade it, refuse a wrong one.

The migrations live in the repository's top-level ``alembic/`` folder; a wheel carries the same
files as ``automl/_migrations`` (see ``pyproject.toml``). Alembic is configured here in code, so no
``alembic.ini`` is needed at run time.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Iterator

import optuna
import sqlalchemy
import sqlalchemy.exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from automl.errors import UserError
from automl.storage.locks import SCHEMA_LOCK, lock_key
from automl.storage.optuna_adapter import optuna_migrations
from automl.storage.retry import with_retry
from automl.storage.urls import make_engine, mask_url, unreachable

VERSION_TABLE = "automl_alembic_version"
"""automl's own version table, so Optuna's ``alembic_version`` is never touched."""
OPTUNA_VERSION_TABLE = "alembic_version"

_PACKAGE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's automl tables stand against this automl's migrations."""

    storage: str
    """The masked URL."""
    current: str | None
    """The revision in the database; None when it has no automl tables yet."""
    head: str
    state: str
    """``empty`` (no automl tables), ``current`` (at head), ``old`` (needs ``automl db upgrade``), ``newer``."""

    def as_dict(self) -> dict:
        return asdict(self)


def script_location() -> Path:
    """The migrations folder: ``automl/_migrations`` in a wheel, ``alembic/`` beside the package in a checkout."""
    for folder in (_PACKAGE / "_migrations", _PACKAGE.parent / "alembic"):
        if (folder / "env.py").is_file() and (folder / "versions").is_dir():
            return folder
    raise RuntimeError(f"automl's migrations are missing: neither {_PACKAGE / '_migrations'} "
                       f"nor {_PACKAGE.parent / 'alembic'} holds env.py and versions/; reinstall automl")


def alembic_config(connection: sqlalchemy.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this automl knows."""
    return _scripts().get_current_head()


def revisions() -> list[str]:
    """Every revision this automl knows, oldest first."""
    return [r.revision for r in reversed(list(_scripts().walk_revisions()))]


def status(url: str) -> SchemaStatus:
    """The revision of ``url``'s automl tables; reads only (a missing SQLite file is an error)."""
    with _transaction(url, create=False) as connection:
        return _status(connection, mask_url(url))


def ensure_schema(url: str, *, create: bool = True) -> SchemaStatus:
    """Check ``url``'s automl tables before a study uses them.

    A database without them gets them at head (when ``create``); one at an older revision, or at
    one this automl does not know (a newer automl wrote it), is a UserError with the fix.
    """
    # One transaction, so a connection cut in it (a failover) rolls it all back and it is run again whole.
    return with_retry(_ensure_schema, url, create=create)


def _ensure_schema(url: str, *, create: bool) -> SchemaStatus:
    shown = mask_url(url)
    with _transaction(url, create=create) as connection:
        found = _status(connection, shown)
        _refuse_other_optuna(connection, shown)
        if found.state == "empty" and create:
            command.upgrade(alembic_config(connection), "head")
            return _status(connection, shown)
    if found.state == "old":
        raise UserError(f"the automl tables in {shown} are at {found.current}, this automl needs {found.head}; "
                        f"run: automl db upgrade --storage {shown}")
    _refuse_newer(found)
    return found


def upgrade(url: str, revision: str = "head") -> tuple[SchemaStatus, SchemaStatus]:
    """Migrate ``url``'s automl tables to ``revision``, keeping their rows; returns (before, after)."""
    shown = mask_url(url)
    if revision != "head" and revision not in revisions():
        raise UserError(f"unknown automl schema revision {revision!r}; known: {', '.join(revisions())}")
    with _transaction(url, create=True) as connection:
        before = _status(connection, shown)
        _refuse_newer(before)
        command.upgrade(alembic_config(connection), revision)
        return before, _status(connection, shown)


@contextmanager
def _transaction(url: str, *, create: bool) -> Iterator[sqlalchemy.Connection]:
    """One connection in one transaction; on PostgreSQL it holds the schema lock, so two workers
    starting on a new database do not both create the tables."""
    engine = make_engine(url, create=create)
    try:
        try:
            connection = engine.connect()
        except sqlalchemy.exc.DBAPIError as exc:
            raise unreachable(mask_url(url), exc) from None
        with connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(SCHEMA_LOCK)})
            yield connection
    finally:
        engine.dispose()


def _status(connection: sqlalchemy.Connection, shown: str) -> SchemaStatus:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    heads = context.get_current_heads()
    newest = head()
    current = ", ".join(heads) if heads else None
    if current is None:
        state = "empty"
    elif current == newest:
        state = "current"
    elif all(h in revisions() for h in heads):
        state = "old"
    else:
        state = "newer"
    return SchemaStatus(storage=shown, current=current, head=newest, state=state)


@cache
def _optuna_scripts() -> ScriptDirectory:
    return ScriptDirectory(str(optuna_migrations()))


def _refuse_other_optuna(connection: sqlalchemy.Connection, shown: str) -> None:
    """Refuse a database whose Optuna tables this Optuna cannot use, before automl creates its own there
    (Optuna itself would refuse only after they were made)."""
    context = MigrationContext.configure(connection, opts={"version_table": OPTUNA_VERSION_TABLE})
    found = context.get_current_revision()
    scripts = _optuna_scripts()
    needed = scripts.get_current_head()
    if found is None or found == needed:
        return
    if found in {r.revision for r in scripts.walk_revisions()}:
        fix = f"run: optuna storage upgrade --storage {shown}"
    else:
        fix = "they were written by a newer Optuna; upgrade it (pip install -U optuna)"
    raise UserError(f"the Optuna tables in {shown} are at {found}, this Optuna ({optuna.__version__}) needs "
                    f"{needed}; {fix}")


def _refuse_newer(found: SchemaStatus) -> None:
    if found.state == "newer":
        raise UserError(f"the automl tables in {found.storage} are at revision {found.current!r}, which this "
                        f"automl does not know (its newest is {found.head}): they were written by a newer "
                        "automl; upgrade automl (pip install -U automl) to use this database")


__all__ = ["VERSION_TABLE", "SchemaStatus", "alembic_config", "ensure_schema", "head", "revisions",
           "script_location", "status", "upgrade"]
