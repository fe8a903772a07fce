"""Storage URLs: which one applies, how it is shown (never with its password), and opening it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import optuna
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from automl.errors import UserError

DEFAULT_STORAGE = "sqlite:///automl.db"
ENV_VAR = "AUTOML_STORAGE"


def resolve_url(cli: str | None = None, study_file: str | None = None,
                environ: Mapping[str, str] | None = None) -> str:
    """``--storage``, else ``AUTOML_STORAGE``, else the study file's, else ``sqlite:///automl.db``."""
    environ = os.environ if environ is None else environ
    return cli or environ.get(ENV_VAR) or study_file or DEFAULT_STORAGE


def mask_url(url: str) -> str:
    """The URL as it may be printed: the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return "<unparsable storage URL>"


def open_storage(url: str, *, create: bool = True, **heartbeat: Any) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage at ``url``; an unreachable, malformed or missing database is a UserError.

    With ``create=False`` (queries) a SQLite file that does not exist is an error instead
    of an empty new database. ``heartbeat`` holds RDBStorage's ``heartbeat_interval``, ``grace_period``
    and ``heartbeat_stale_trial_callback``.
    """
    shown = mask_url(url)
    parsed = _check(url, create=create)
    try:
        with warnings.catch_warnings():  # Optuna calls heartbeats experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(parsed.get_backend_name()),
                                              **heartbeat)
    except ImportError as exc:
        raise _missing_driver(shown, exc) from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise unreachable(shown, exc) from None
    except RuntimeError as exc:  # Optuna's "current schema is outdated/newer" refusal
        raise UserError(f"storage {shown}: {str(exc).splitlines()[0]}") from None


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
    return UserError(f"cannot open storage {shown}: {reason}; check the URL and that the server is up")


def _check(url: str, *, create: bool) -> sqlalchemy.URL:
    shown = mask_url(url)
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"storage {url!r} is not a database URL; use e.g. sqlite:///automl.db "
                        "or postgresql://user@host/db") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not create and not path.exists():
            raise UserError(f"no database at {shown} (file {str(path)!r} does not exist); "
                            "give the right --storage or run a study first")
        if not path.parent.exists():
            raise UserError(f"cannot create {shown}: folder {str(path.parent)!r} does not exist")
    return parsed


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
