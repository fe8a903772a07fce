"""automl's own tables (``automl_*``), next to Optuna's in the study's database: one model per table.

The schema is changed only through the migrations in ``alembic/versions``; these models describe
the head revision, and ``tests/storage/test_schema.py`` checks that the two agree.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import JSON, DateTime, Engine, Float, Index, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

STUDY_NAME_LENGTH = 512  # Optuna's own limit for study names


def utcnow() -> datetime:
    """Naive UTC, as Optuna stores its own times (SQLite keeps no time zone)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class StudySourceModel(Base):
    """One row per distinct text of a study's file: what ran, and with which plugins.

    A resumed study whose file is unchanged adds nothing; an edited file adds a row, so the
    history of a study's definition is kept with the time each version first ran.
    """

    __tablename__ = "automl_study_source"
    __table_args__ = (UniqueConstraint("study_name", "sha256", name="uq_automl_study_source_study_sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_name: Mapped[str] = mapped_column(String(STUDY_NAME_LENGTH))
    path: Mapped[str] = mapped_column(String(1024))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    plugins: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """``[{"trick", "plugin", "source"}]``; ``source`` is ``"<distribution> <version>: <module>"`` or a file."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @classmethod
    def find(cls, session: Session, study_name: str, sha256: str) -> StudySourceModel | None:
        return session.scalar(select(cls).where(cls.study_name == study_name, cls.sha256 == sha256))

    @classmethod
    def history(cls, session: Session, study_name: str) -> list[StudySourceModel]:
        """Every version of the study's file, oldest first."""
        return list(session.scalars(select(cls).where(cls.study_name == study_name).order_by(cls.id)))

    @classmethod
    def record(cls, session: Session, study_name: str, path: str, text: str,
               plugins: list[dict[str, Any]]) -> StudySourceModel:
        """The row for this text of the file, added when the study has not run it before."""
        sha256 = hashlib.sha256(text.encode()).hexdigest()
        row = cls.find(session, study_name, sha256)
        if row is None:
            row = cls(study_name=study_name, path=path, text=text, sha256=sha256, plugins=plugins)
            session.add(row)
        return row


class BudgetLedgerModel(Base):
    """A study's device-time budget: the total, what running trials reserved, what finished ones spent."""

    __tablename__ = "automl_budget_ledger"

    study_name: Mapped[str] = mapped_column(String(STUDY_NAME_LENGTH), primary_key=True)
    total_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    """None: no total budget (the study is bounded by n_trials only)."""
    reserved_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    spent_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    trials_started: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Trials that count towards ``n_trials``: reservations made, less those released unused and
    those of trials that are retried (the retry takes their place)."""
    sessions_started: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """``automl run`` invocations on the study so far; each seeds its sampler by its own number."""
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @classmethod
    def find(cls, session: Session, study_name: str) -> BudgetLedgerModel | None:
        return session.get(cls, study_name)


class TrialCostModel(Base):
    """What one trial cost: who ran it where, its reservation, what it spent, its last heartbeat."""

    __tablename__ = "automl_trial_cost"
    __table_args__ = (UniqueConstraint("study_name", "trial_number", name="uq_automl_trial_cost_study_trial"),
                      Index("ix_automl_trial_cost_study_state", "study_name", "state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_name: Mapped[str] = mapped_column(String(STUDY_NAME_LENGTH))
    trial_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Optuna's ``trial.number`` within the study; None while the reservation waits for its trial."""
    worker_id: Mapped[str] = mapped_column(String(255))
    device: Mapped[str] = mapped_column(String(64))
    reserved_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    spent_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    """``reserved`` until Optuna has created the trial, ``running`` while it runs, then ``complete``,
    ``pruned`` or ``failed``."""
    retry_claimed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    """When a recovery claimed the right to queue this failed trial's retry (database clock); None: unclaimed."""

    @classmethod
    def find(cls, session: Session, study_name: str, trial_number: int) -> TrialCostModel | None:
        return session.scalar(select(cls).where(cls.study_name == study_name, cls.trial_number == trial_number))

    @classmethod
    def of_study(cls, session: Session, study_name: str, state: str | None = None) -> list[TrialCostModel]:
        query = select(cls).where(cls.study_name == study_name)
        if state is not None:
            query = query.where(cls.state == state)
        return list(session.scalars(query.order_by(cls.trial_number)))


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back when it raises."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


__all__ = ["Base", "BudgetLedgerModel", "StudySourceModel", "TrialCostModel", "session_scope", "utcnow"]
