"""The budget ledger: what it counts and gives back, and on PostgreSQL, racing workers never reserve more than the
total, nor more trials than n_trials."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from automl.budget import Budget
from automl.storage.ledger import Ledger, LedgerTotals
from automl.storage.models import TrialCostModel
from automl.storage.schema import ensure_schema


@pytest.fixture
def ledger(sqlite_url):
    """A study's ledger in a fresh database at automl's head schema, with a total of 10 s."""
    ensure_schema(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    book = Ledger(engine, "budgeted")
    book.open(10.0)
    yield book
    engine.dispose()


def finish(book: Ledger, number: int, spent: float, state: str = "complete") -> None:
    reservation = book.reserve(Budget(3, "seconds"))
    assert reservation is not None
    assert book.settle(reservation, number, spent, state)


def test_the_ledger_counts_every_finished_trial(ledger):
    for number, spent in enumerate((3.2, 3.1)):
        finish(ledger, number, spent)
    assert ledger.totals() == LedgerTotals(10.0, 0.0, pytest.approx(6.3), trials=2)
    cost = ledger.estimate(Budget(3, "seconds"))
    assert cost == pytest.approx(3.15)  # the budget plus the mean overhead of evaluation
    reservation = ledger.reserve(cost)  # 3.7 left >= 3.15
    assert reservation is not None
    assert ledger.settle(reservation, 2, 1.0, "pruned")
    assert not ledger.settle(reservation, 2, 1.0, "pruned")  # settled once
    assert ledger.reserve(Budget(3, "seconds")) is None  # 2.7 left < a whole trial
    assert ledger.totals() == LedgerTotals(10.0, 0.0, pytest.approx(7.3), trials=3)


def test_step_budgets_are_estimated_from_the_trials_that_ran(ledger):
    assert ledger.estimate(Budget(100, "steps")) == 0 and ledger.completed_mean() is None
    assert ledger.estimate(Budget(100, "steps"), first_estimate=4.0) == 4.0  # a timed guess before any completes
    assert ledger.reserve(Budget(100, "steps"), first_estimate=11.0) is None  # the guess alone is over the 10 s
    ledger.settle(ledger.reserve(Budget(100, "steps"), first_estimate=4.0), 0, 6.0, "complete")
    assert ledger.totals() == LedgerTotals(10.0, 0.0, 6.0, trials=1)
    assert ledger.estimate(Budget(100, "steps"), first_estimate=1.0) == pytest.approx(6.0)  # measured wins
    assert ledger.reserve(Budget(100, "steps")) is None  # 4 s left < 6 s


def test_the_ledger_bounds_the_trial_count_and_gives_back_unused_reservations(ledger):
    first, second = ledger.reserve(1.0, n_trials=2), ledger.reserve(1.0, n_trials=2)
    assert None not in (first, second) and first != second
    assert ledger.reserve(1.0, n_trials=2) is None  # two trials reserved of two
    assert ledger.reserve(1.0, n_trials=3) is not None  # a larger n_trials (a resumed study) leaves room
    assert ledger.release(second) and not ledger.release(second)  # given back once
    assert ledger.totals() == LedgerTotals(10.0, 2.0, 0.0, trials=2)
    assert ledger.attach(first, 0) and ledger.heartbeat(first, 1.5)  # then its worker died
    assert ledger.settle_stale(0, retried=True)  # its retry takes its place among n_trials
    assert not ledger.settle_stale(0, retried=True) and not ledger.settle(first, 0, 2.0, "complete")  # once
    assert ledger.totals() == LedgerTotals(10.0, 1.0, 1.5, trials=1)


def test_a_reservation_whose_trial_never_sent_a_heartbeat_is_reclaimed(ledger):
    running, orphan = ledger.reserve(2.0), ledger.reserve(3.0)
    assert ledger.attach(running, 0) and ledger.heartbeat(running, 0.5)
    assert ledger.reclaim(older_than=60) == 0  # both were made just now
    assert ledger.waiting_for_trial(younger_than=60) == 1  # the orphan, for all anyone knows yet
    time.sleep(0.05)
    assert ledger.reclaim(older_than=0.01) == 1  # the orphan; a reservation tied to its trial stays
    assert not ledger.attach(orphan, 1)  # given back: its worker, were it only paused, gets no trial on it
    assert ledger.totals() == LedgerTotals(10.0, 2.0, 0.0, trials=1)
    with ledger.engine.connect() as connection:
        rows = connection.execute(sa.select(TrialCostModel.id, TrialCostModel.state)).all()
    assert rows == [(running, "running")] and orphan != running


def test_liveness_is_read_on_the_databases_clock(ledger):
    reservation = ledger.reserve(2.0)
    assert ledger.attach(reservation, 0)
    assert ledger.stale(older_than=60) == []
    with ledger.engine.begin() as connection:  # the last heartbeat a minute ago, by the database's clock
        connection.execute(sa.text("UPDATE automl_trial_cost SET heartbeat_at = datetime('now', '-61 seconds')"))
    assert ledger.stale(older_than=60) == [0]
    assert ledger.heartbeat(reservation, 1.0) and ledger.stale(older_than=60) == []  # beating again
    assert ledger.settle_stale(0, "complete", retried=False) and not ledger.heartbeat(reservation, 2.0)
    assert ledger.totals() == LedgerTotals(10.0, 0.0, 1.0, trials=1)


def test_a_trial_without_a_reservation_gets_one_settled_cost_row(ledger):
    assert ledger.record_unreserved(3, "failed") and not ledger.record_unreserved(3, "failed")  # once
    assert ledger.attached() == {3} and ledger.totals() == LedgerTotals(10.0, 0.0, 0.0, trials=0)


def test_each_run_of_a_study_takes_the_next_session_number(ledger):
    assert [ledger.start_session() for _ in range(3)] == [0, 1, 2]
    ledger.open(12.0)  # a resumed study's new total keeps the count
    assert ledger.start_session() == 3


class CheckThenReserveLedger(Ledger):
    """A broken ledger that reads what is left, then reserves: the race the one-statement reserve prevents."""

    def reserve(self, cost: float, n_trials: int | None = None) -> int | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.text(
                "SELECT total_seconds, reserved_seconds, spent_seconds FROM automl_budget_ledger "
                "WHERE study_name = :s"), {"s": self.study_name}).one()
        if row.total_seconds is not None and row.spent_seconds + row.reserved_seconds + cost > row.total_seconds:
            return None
        time.sleep(0.01)  # the worker is preempted between its check and its write
        with self.engine.begin() as connection:
            connection.execute(sa.text("UPDATE automl_budget_ledger SET reserved_seconds = reserved_seconds + :r "
                                       "WHERE study_name = :s"), {"r": cost, "s": self.study_name})
        return 1


def race(url: str, ledger: type[Ledger], *, total: float | None, n_trials: int | None,
         cost: float = 1.5, threads: int = 8, attempts: int = 5) -> tuple[int, Ledger]:
    """``threads`` workers, each with its own connection, try ``attempts`` reservations at once; how many won."""
    ensure_schema(url)
    engines = [sa.create_engine(url, pool_size=1) for _ in range(threads)]
    Ledger(engines[0], "race").open(total)
    start = threading.Barrier(threads)
    granted: list[bool] = []

    def worker(engine: sa.Engine) -> None:
        book = ledger(engine, "race")
        start.wait()
        for _ in range(attempts):
            granted.append(book.reserve(cost, n_trials=n_trials) is not None)

    runners = [threading.Thread(target=worker, args=(engine,)) for engine in engines]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    for engine in engines[1:]:
        engine.dispose()
    assert len(granted) == threads * attempts
    return sum(granted), Ledger(engines[0], "race")


@pytest.mark.postgres
def test_racing_reservations_never_exceed_the_total(postgres_url):
    won, book = race(postgres_url, Ledger, total=10.0, n_trials=None)
    assert won == 6  # floor(10 / 1.5) of 40 attempts, whoever wins the races
    totals = book.totals()
    assert totals.reserved == pytest.approx(6 * 1.5) and totals.spent == 0 and totals.trials == 6
    book.engine.dispose()


@pytest.mark.postgres
def test_racing_reservations_never_exceed_n_trials(postgres_url):
    won, book = race(postgres_url, Ledger, total=None, n_trials=5)
    assert won == 5 and book.totals().trials == 5
    book.engine.dispose()


@pytest.mark.postgres
def test_the_race_catches_a_ledger_that_checks_then_reserves(postgres_url):
    """The harness above can fail: a reserve that is not one statement overshoots the total in the same race."""
    won, book = race(postgres_url, CheckThenReserveLedger, total=10.0, n_trials=None)
    assert won > 6 and book.totals().reserved > 10.0
    book.engine.dispose()
