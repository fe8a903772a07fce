"""Storage URLs: which one applies, how it is shown (never with its password), and opening it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Mapping

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from automl.errors import UserError
from automl.storage.retry import with_retry

DEFAULT_STORAGE = "sqlite:///automl.db"
ENV_VAR = "AUTOML_STORAGE"


def resolve_url(cli: str | None = None, study_file: str | None = None,
                environ: Mapping[str, str] | None = None) -> str:
    """``--storage``, else ``AUTOML_STORAGE``, else the study file's, else ``sqlite:///automl.db``."""
    environ = os.environ if environ is None else environ
    return cli or environ.get(ENV_VAR) or study_file or DEFAULT_STORAGE


def mask_url(url: str) -> str:
    """The URL as it may be printed: the password replaced by ``***``, whether the URL parses or not."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return _mask_unparsed(url)


def _mask_unparsed(url: str) -> str:
    """Everything after the first ``:`` of the user part (before the last ``@``) masked: a URL that does
    not parse may lack its ``://``, so the user part is found from the ``@`` back."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    start = head.rfind("//") + 2 if "//" in head else 0
    user, colon, _ = head[start:].partition(":")
    return f"{head[:start]}{user}{colon}***@{tail}" if colon else url


def open_storage(url: str, *, create: bool = True) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage at ``url`` whose calls retry transient errors; an unreachable, malformed or
    missing database is a UserError.

    With ``create=False`` (queries) a SQLite file that does not exist is an error instead
    of an empty new database. On PostgreSQL, Optuna creates its tables under the schema lock, so
    two runs starting at once on a new database do not race to create them.
    """
    from automl.storage.optuna_adapter import RetryingStorage

    shown = mask_url(url)
    parsed = _check(url, create=create)
    kwargs = _engine_kwargs(parsed.get_backend_name())
    try:
        if parsed.get_backend_name() != "postgresql":
            return RetryingStorage(url, engine_kwargs=kwargs)
        engine = sqlalchemy.create_engine(url, **kwargs)
        try:
            # Once without retry: a server that refuses, a database that does not exist, a bad login are the
            # user's to fix now; only a connection lost after this one opened is waited for.
            engine.connect().close()
            return with_retry(_storage_under_lock, engine, url, kwargs)
        finally:
            engine.dispose()
    except ImportError as exc:
        raise _missing_driver(shown, exc) from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise unreachable(shown, exc) from None
    except RuntimeError as exc:  # Optuna's "current schema is outdated/newer" refusal
        raise UserError(f"storage {shown}: {str(exc).splitlines()[0]}") from None


def _storage_under_lock(engine: sqlalchemy.Engine, url: str, kwargs: dict) -> optuna.storages.RDBStorage:
    from automl.storage.locks import SCHEMA_LOCK, advisory_lock
    from automl.storage.optuna_adapter import RetryingStorage

    with advisory_lock(engine, SCHEMA_LOCK):
        return RetryingStorage(url, engine_kwargs=kwargs)


def database_exists(url: str) -> bool:
    """Whether ``url`` names a database already made: False only for a SQLite file not there yet (a server's
    database is there or is an error to open)."""
    parsed = _check(url, create=True)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return parsed.get_backend_name() != "sqlite"
    return Path(parsed.database).exists()


def make_engine(url: str, *, create: bool = True) -> sqlalchemy.Engine:
    """A SQLAlchemy engine for ``url``, checked like :func:`open_storage` (it connects lazily:
    catch connection errors with :func:`unreachable`)."""
    parsed = _check(url, create=create)
    try:
        return sqlalchemy.create_engine(url, **_engine_kwargs(parsed.get_backend_name()))
    except ImportError as exc:
        raise _missing_driver(mask_url(url), exc) from None


def unreachable(shown: str, exc: BaseException) -> UserError:
    """The one-line error for a database that would not open; ``shown`` is the masked URL."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    fix = "check the URL and the file" if shown.startswith("sqlite") else "check the URL and that the server is up"
    return UserError(f"cannot open storage {shown}: {reason}; {fix}")


_EXAMPLES = "use e.g. sqlite:///automl.db or postgresql://user@host/db"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check(url: str, *, create: bool) -> sqlalchemy.URL:
    """The parsed URL, once its scheme is known and (for SQLite) its file can be opened as asked."""
    shown = mask_url(url)
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise UserError(f"storage {shown}: unknown database scheme {url.partition(':')[0]!r}; "
                        f"{_EXAMPLES}") from None
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        why = " (its port must be a number)" if isinstance(exc, ValueError) else ""
        raise UserError(f"storage {shown!r} is not a database URL{why}; {_EXAMPLES}") from None
    except ImportError as exc:
        raise _missing_driver(shown, exc) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _check_sqlite_file(Path(parsed.database), shown, create=create)
    return parsed


def _check_sqlite_file(path: Path, shown: str, *, create: bool) -> None:
    """A SQLite file that will not open as asked, said in its own words (SQLite says "unable to open")."""
    if not create and not path.exists():
        raise UserError(f"no database at {shown} (file {str(path)!r} does not exist); "
                        "give the right --storage or run a study first")
    if path.is_dir():
        raise UserError(f"cannot open storage {shown}: {str(path)!r} is a directory; give a file in it, "
                        f"e.g. sqlite:///{(path / 'automl.db').as_posix()}")
    if not path.parent.is_dir():
        raise UserError(f"cannot create {shown}: folder {str(path.parent)!r} does not exist")
    if path.is_file():
        with path.open("rb") as file:
            start = file.read(len(_SQLITE_MAGIC))
        if start and start != _SQLITE_MAGIC:
            raise UserError(f"cannot open storage {shown}: file {str(path)!r} is not a SQLite database; "
                            "give another file name")
        _check_sqlite_readable(path, shown)
    # SQLite writes a journal beside the file, so the folder must be writable as well as the file.
    read_only = [p for p in (path, path.parent) if p.exists() and not os.access(p, os.W_OK)]
    if create and read_only:
        raise UserError(f"cannot write storage {shown}: {str(read_only[0])!r} is read-only; "
                        "make it writable or give another --storage")


def _check_sqlite_readable(path: Path, shown: str) -> None:
    """A file with SQLite's header whose pages are not a database (truncated, overwritten) is refused before
    anything reads or writes it: its schema is read once, read-only."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return  # it cannot be opened at all: SQLAlchemy says why in its own words
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"cannot open storage {shown}: file {str(path)!r} is not a usable SQLite database "
                        f"({exc}); move it away or give another --storage") from None
    except sqlite3.Error:
        return  # locked by a writer, say: not this check's to judge
    finally:
        connection.close()


def _missing_driver(shown: str, exc: ImportError) -> UserError:
    return UserError(f"storage {shown} needs a driver that is not installed ({exc}); "
                     "for PostgreSQL: pip install 'automl[postgres]'")


def _engine_kwargs(backend: str) -> dict:
    if backend == "sqlite":
        # Several processes may share one SQLite file; wait for a lock instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    if backend == "postgresql":
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {"pool_pre_ping": True}
