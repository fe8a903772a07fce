"""Alembic environment for automl's own tables (``automl_*``), versioned in ``automl_alembic_version``.

``automl db upgrade`` runs it with the connection in ``config.attributes["connection"]``;
developers can also run ``alembic -x url=sqlite:///automl.db upgrade head`` from the repository root.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from automl.storage.models import Base
from automl.storage.schema import VERSION_TABLE

config = context.config
# For `alembic revision --autogenerate` only; migrations themselves never import the models.
target_metadata = Base.metadata


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    # The database also holds Optuna's tables; autogenerate must only ever see automl's.
    return type_ != "table" or name.startswith("automl_")


def _options(dialect_name: str) -> dict:
    return {"target_metadata": target_metadata, "version_table": VERSION_TABLE,
            "include_object": _include_object,
            # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
            "render_as_batch": dialect_name == "sqlite"}


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///automl.db upgrade head")
    return url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(url=url, literal_binds=True, **_options(url.split(":", 1)[0].split("+")[0]))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # Inside automl's own transaction (and, on PostgreSQL, its advisory lock).
        context.configure(connection=connection, **_options(connection.dialect.name))
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **_options(connection.dialect.name))
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
