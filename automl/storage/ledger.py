"""The study's global budget ledger: a trial's device time is reserved atomically before it runs and settled after.

Every worker of a study, on any machine, goes through the one ``automl_budget_ledger`` row of the
study, so together they never start a trial that would take the total over (or the study's ``n_trials``);
the study can only overshoot by what running trials spend beyond their reservation.
``automl_trial_cost`` keeps one row per reservation, from before its trial exists: who ran it
where, what it reserved, what it spent, its last heartbeat.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy import Engine

from automl.budget import Budget
from automl.records import COMPLETE, ENDINGS, FAILED
from automl.storage.clock import database_now, utc_now
from automl.storage.models import BudgetLedgerModel, TrialCostModel, session_scope, utcnow
from automl.storage.retry import retrying

RESERVED = "reserved"
RUNNING = "running"
SETTLED_STATES = ENDINGS
"""The states a settled trial's cost row ends in (Optuna's final states, in lower case)."""

_RESERVE = ("UPDATE automl_budget_ledger SET reserved_seconds = reserved_seconds + :r, "
            "trials_started = trials_started + 1, updated_at = :now WHERE study_name = :s "
            "AND (total_seconds IS NULL OR spent_seconds + reserved_seconds + :r <= total_seconds)")
_WITHIN_N_TRIALS = " AND trials_started < :n"
_MOVE = sa.text(
    "UPDATE automl_budget_ledger SET reserved_seconds = reserved_seconds - :r, "
    "spent_seconds = spent_seconds + :spent, trials_started = trials_started - :uncount, updated_at = :now "
    "WHERE study_name = :s")

def worker_id() -> str:
    """``host:pid``: which process ran a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LedgerTotals:
    total: float | None
    reserved: float
    spent: float
    trials: int = 0
    """Trials counted towards ``n_trials``."""

    @property
    def left(self) -> float | None:
        return None if self.total is None else self.total - self.spent - self.reserved


class Ledger:
    """One study's ledger, as seen by one worker."""

    def __init__(self, engine: Engine, study_name: str, *, device: str = "cpu", worker: str | None = None,
                 devices: int = 1) -> None:
        self.engine = engine
        self.study_name = study_name
        self.device = device
        self.worker = worker or worker_id()
        self.devices = devices
        """The devices each of this worker's trials trains on at once: a trial budget of device time lasts
        that long on each of them."""

    def open(self, total_seconds: float | None) -> None:
        """Create the study's ledger row, or set its total (the latest command's total budget wins)."""
        try:
            with session_scope(self.engine) as session:
                row = session.get(BudgetLedgerModel, self.study_name, with_for_update=True)
                if row is None:
                    session.add(BudgetLedgerModel(study_name=self.study_name, total_seconds=total_seconds,
                                                  reserved_seconds=0.0, spent_seconds=0.0, sessions_started=0))
                elif row.total_seconds != total_seconds:
                    row.total_seconds = total_seconds
        except sa.exc.IntegrityError:
            self.open(total_seconds)  # another worker created the row first: now it exists

    def start_session(self) -> int:
        """The number of this ``automl run`` among the study's (0 for the first), taken atomically."""
        with self.engine.begin() as connection:
            return connection.execute(sa.update(BudgetLedgerModel).where(
                BudgetLedgerModel.study_name == self.study_name,
            ).values(sessions_started=BudgetLedgerModel.sessions_started + 1)
                .returning(BudgetLedgerModel.sessions_started)).scalar_one() - 1

    def reserve(self, cost: float | Budget, n_trials: int | None = None, *,
                first_estimate: float = 0.0) -> int | None:
        """Reserve a trial's device time and its place among ``n_trials``; the reservation's id, or None
        (nothing reserved) when the total budget or the trial count would be exceeded.

        One transaction: one conditional UPDATE of the study's ledger row (which also serialises
        racing workers) and the reservation's cost row, so no reservation exists without its row.
        ``cost`` is seconds, or a trial budget to :meth:`estimate` in the same transaction
        (``first_estimate`` while no trial has completed).
        """
        with self.engine.begin() as connection:
            seconds = cost if not isinstance(cost, Budget) else self._estimate(connection, cost, first_estimate)
            now = utcnow()
            reserve = _RESERVE + (_WITHIN_N_TRIALS if n_trials is not None else "")
            params = {"r": seconds, "s": self.study_name, "now": now}
            if n_trials is not None:
                params["n"] = n_trials
            done = connection.execute(sa.text(reserve), params)
            if done.rowcount != 1:
                return None
            return connection.execute(sa.insert(TrialCostModel).values(
                study_name=self.study_name, trial_number=None, worker_id=self.worker, device=self.device,
                reserved_seconds=seconds, spent_seconds=0.0, heartbeat_at=utc_now(), state=RESERVED,
            ).returning(TrialCostModel.id)).scalar_one()

    def release(self, reservation: int) -> bool:
        """Give back a reservation that no trial used (its time and its trial slot); False if already given back."""
        with self.engine.begin() as connection:
            return self._release(connection, reservation)

    def reclaim(self, older_than: float) -> int:
        """Give back the reservations that never got their trial, ``older_than`` seconds after they were made
        (their worker died between reserving and creating the trial); how many."""
        with self.engine.begin() as connection:
            cutoff = database_now(connection) - timedelta(seconds=older_than)
            stale = connection.scalars(sa.select(TrialCostModel.id).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.state == RESERVED,
                TrialCostModel.heartbeat_at < cutoff)).all()
            return sum(self._release(connection, reservation) for reservation in stale)

    def _release(self, connection: sa.Connection, reservation: int) -> bool:
        row = connection.execute(sa.delete(TrialCostModel).where(
            TrialCostModel.id == reservation, TrialCostModel.state == RESERVED,
        ).returning(TrialCostModel.reserved_seconds)).first()
        if row is None:  # attached, or given back by another worker first
            return False
        connection.execute(_MOVE, {"r": row.reserved_seconds, "spent": 0.0, "uncount": 1, "s": self.study_name,
                                   "now": utcnow()})
        return True

    def attach(self, reservation: int, trial_number: int) -> bool:
        """Tie ``reservation`` to the trial Optuna has just created for it, with its first heartbeat;
        False when it was given back first (its worker was taken for dead before it got its trial), or
        the trial was taken for an orphan and given a cost row of its own."""
        try:
            with self.engine.begin() as connection:
                return connection.execute(sa.update(TrialCostModel).where(
                    TrialCostModel.id == reservation, TrialCostModel.state == RESERVED,
                ).values(trial_number=trial_number, state=RUNNING, heartbeat_at=utc_now())).rowcount == 1
        except sa.exc.IntegrityError:
            return False

    def heartbeat(self, reservation: int, spent: float) -> bool:
        """The trial holding ``reservation`` is alive and has spent ``spent`` seconds so far (what it is
        settled to if its worker dies); False when it is no longer running (taken for dead, or settled)."""
        with self.engine.begin() as connection:
            return connection.execute(sa.update(TrialCostModel).where(
                TrialCostModel.id == reservation, TrialCostModel.state == RUNNING,
            ).values(spent_seconds=spent, heartbeat_at=utc_now())).rowcount == 1

    def stale(self, older_than: float) -> list[int]:
        """The trials whose worker has sent no heartbeat for ``older_than`` seconds, by the database's clock."""
        with self.engine.begin() as connection:
            cutoff = database_now(connection) - timedelta(seconds=older_than)
            return list(connection.scalars(sa.select(TrialCostModel.trial_number).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.state == RUNNING,
                TrialCostModel.heartbeat_at < cutoff)))

    def settled_among(self, trial_numbers: list[int], older_than: float) -> list[int]:
        """Which of ``trial_numbers`` were settled more than ``older_than`` seconds ago (database clock)."""
        if not trial_numbers:
            return []
        with self.engine.begin() as connection:
            cutoff = database_now(connection) - timedelta(seconds=older_than)
            return list(connection.scalars(sa.select(TrialCostModel.trial_number).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.trial_number.in_(trial_numbers),
                TrialCostModel.state.in_(SETTLED_STATES), TrialCostModel.heartbeat_at < cutoff)))

    def resettle_failed(self, trial_number: int, *, retried: bool) -> None:
        """A settled trial that is failed after all (its worker died before telling Optuna how it ended): its
        row says so, and a ``retried`` one gives its place among ``n_trials`` to its retry."""
        with self.engine.begin() as connection:
            connection.execute(sa.update(TrialCostModel).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.trial_number == trial_number,
            ).values(state=FAILED))
            if retried:
                connection.execute(_MOVE, {"r": 0.0, "spent": 0.0, "uncount": 1, "s": self.study_name,
                                           "now": utcnow()})

    def claim_retry(self, trial_number: int, older_than: float) -> bool:
        """Whether this recovery may queue the retry of failed trial ``trial_number``: one conditional UPDATE of
        its cost row, so of two recoveries at once exactly one may. A claim older than ``older_than`` seconds
        (database clock) may be taken again: its recovery died before queueing the retry. A trial without a
        cost row is given one (nothing reserved, nothing spent) and claimed."""
        with self.engine.begin() as connection:
            cutoff = database_now(connection) - timedelta(seconds=older_than)
            claimed = connection.execute(sa.update(TrialCostModel).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.trial_number == trial_number,
                sa.or_(TrialCostModel.retry_claimed_at.is_(None), TrialCostModel.retry_claimed_at < cutoff),
            ).values(retry_claimed_at=utc_now())).rowcount == 1
        if claimed or trial_number in self.attached():
            return claimed
        self.record_unreserved(trial_number, FAILED)
        return self.claim_retry(trial_number, older_than)

    def attached(self) -> set[int]:
        """The trial numbers that hold a cost row, settled or not."""
        with self.engine.connect() as connection:
            return set(connection.scalars(sa.select(TrialCostModel.trial_number).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.trial_number.is_not(None))))

    def waiting_for_trial(self, younger_than: float) -> int:
        """Reservations made in the last ``younger_than`` seconds that have no trial yet (their worker is
        between reserving and creating it)."""
        with self.engine.begin() as connection:
            cutoff = database_now(connection) - timedelta(seconds=younger_than)
            return connection.execute(sa.select(sa.func.count()).select_from(TrialCostModel).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.state == RESERVED,
                TrialCostModel.heartbeat_at >= cutoff)).scalar_one()

    def record_unreserved(self, trial_number: int, state: str, *, recount: bool = False) -> bool:
        """A cost row for a trial that ran without one (its worker died before tying its reservation to
        it, and the reservation was given back): nothing reserved, nothing shown spent. ``recount``: the
        trial is a retry that will never run, so the trial it re-runs, whose place among ``n_trials`` it was
        given, takes that place back (the count stays equal to the trials that count), in the same
        transaction."""
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(TrialCostModel).values(
                    study_name=self.study_name, trial_number=trial_number, worker_id="(unknown)",
                    device="(unknown)", reserved_seconds=0.0, spent_seconds=0.0, heartbeat_at=utc_now(),
                    state=state))
                if recount:
                    connection.execute(_MOVE, {"r": 0.0, "spent": 0.0, "uncount": -1, "s": self.study_name,
                                               "now": utcnow()})
            return True
        except sa.exc.IntegrityError:  # recorded already
            return False

    def settle(self, reservation: int, trial_number: int, spent: float, state: str, *, retried: bool = False) -> bool:
        """Turn this worker's reservation into the ``spent`` seconds of trial ``trial_number``, which ended in ``state``.

        ``retried``: the trial will run again as a new trial, which takes its place among ``n_trials``.
        Settles once: False when the reservation is no longer held (a worker that took this one for
        dead settled it first).
        """
        return self._settle(TrialCostModel.id == reservation, (RESERVED, RUNNING), trial_number, spent, state,
                            uncount=int(retried))

    def settle_stale(self, trial_number: int, state: str = FAILED, *, retried: bool) -> bool:
        """Settle the trial of a dead worker, ended in ``state``, to the seconds its last heartbeat recorded.

        False when it holds no running reservation (already settled, or never tied to its trial).
        """
        return self._settle(TrialCostModel.trial_number == trial_number, (RUNNING,), trial_number, None, state,
                            uncount=int(retried))

    def _settle(self, which: sa.ColumnElement[bool], held: tuple[str, ...], trial_number: int,
                spent: float | None, state: str, uncount: int = 0) -> bool:
        if state not in SETTLED_STATES:
            raise ValueError(f"state must be one of {SETTLED_STATES}, got {state=}")
        held_row = sa.and_(which, TrialCostModel.study_name == self.study_name, TrialCostModel.state.in_(held))
        with self.engine.begin() as connection:
            row = connection.execute(sa.select(TrialCostModel.reserved_seconds, TrialCostModel.spent_seconds)
                                     .where(held_row)).first()
            if row is None:
                return False
            spent = row.spent_seconds if spent is None else spent
            now = utcnow()
            done = connection.execute(sa.update(TrialCostModel).where(held_row).values(
                trial_number=trial_number, state=state, spent_seconds=spent, heartbeat_at=utc_now()))
            if done.rowcount != 1:  # settled by another worker between the two statements
                return False
            connection.execute(_MOVE, {"r": row.reserved_seconds, "spent": spent, "uncount": uncount,
                                       "s": self.study_name, "now": now})
            return True

    def estimate(self, trial_budget: Budget, first_estimate: float = 0.0) -> float:
        """What the next trial will cost: a time budget plus the mean evaluation overhead of the completed
        trials, or for a budget in steps or epochs the mean cost of the completed trials
        (``first_estimate`` before any has completed)."""
        with self.engine.connect() as connection:
            return self._estimate(connection, trial_budget, first_estimate)

    def _estimate(self, connection: sa.Connection, trial_budget: Budget, first_estimate: float = 0.0) -> float:
        complete = sa.and_(TrialCostModel.study_name == self.study_name, TrialCostModel.state == COMPLETE)
        per_trial = trial_budget.amount * self.devices
        if trial_budget.is_time:
            over = sa.case((TrialCostModel.spent_seconds > per_trial, TrialCostModel.spent_seconds - per_trial),
                           else_=0.0)
            query = sa.select(sa.func.avg(over)).where(complete)
        else:
            query = sa.select(sa.func.avg(TrialCostModel.spent_seconds)).where(complete)
        mean = connection.execute(query).scalar()
        if trial_budget.is_time:
            return per_trial + float(mean or 0.0)
        return first_estimate if mean is None else float(mean)

    def completed_mean(self) -> float | None:
        """The mean cost of the study's completed trials; None before any has completed."""
        with self.engine.connect() as connection:
            value = connection.execute(sa.select(sa.func.avg(TrialCostModel.spent_seconds)).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.state == COMPLETE)).scalar()
        return None if value is None else float(value)

    def spent_of(self, trial_number: int) -> float:
        """The seconds trial ``trial_number``'s cost row charges (0 without one)."""
        with self.engine.connect() as connection:
            spent = connection.scalar(sa.select(TrialCostModel.spent_seconds).where(
                TrialCostModel.study_name == self.study_name, TrialCostModel.trial_number == trial_number))
        return float(spent or 0.0)

    def totals(self) -> LedgerTotals:
        with session_scope(self.engine) as session:
            row = BudgetLedgerModel.find(session, self.study_name)
            if row is None:
                return LedgerTotals(None, 0.0, 0.0)
            return LedgerTotals(row.total_seconds, row.reserved_seconds, row.spent_seconds, row.trials_started)


# Every call is one transaction of its own: on a transient error it is run again (automl.storage.retry).
for _name in ("open", "start_session", "reserve", "release", "reclaim", "attach", "heartbeat", "stale", "attached",
              "settled_among", "resettle_failed",
              "waiting_for_trial", "record_unreserved", "settle", "settle_stale", "estimate", "completed_mean",
              "spent_of", "totals"):
    setattr(Ledger, _name, retrying(getattr(Ledger, _name)))


__all__ = ["Ledger", "LedgerTotals", "RESERVED", "RUNNING", "SETTLED_STATES", "worker_id"]
