"""The budget ledger on PostgreSQL: racing workers never reserve more than the total, nor more trials than n_trials."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from automl.storage.ledger import Ledger
from automl.storage.schema import ensure_schema


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
