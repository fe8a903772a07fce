"""The budget ledger on PostgreSQL: racing workers never reserve more than the total."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from automl.storage.ledger import Ledger
from automl.storage.schema import ensure_schema


@pytest.mark.postgres
def test_racing_reservations_never_exceed_the_total(postgres_url):
    ensure_schema(postgres_url)
    total, cost, threads, attempts = 10.0, 1.5, 8, 5
    engines = [sa.create_engine(postgres_url, pool_size=1) for _ in range(threads)]
    Ledger(engines[0], "race").open(total)
    start = threading.Barrier(threads)
    granted: list[bool] = []

    def worker(engine: sa.Engine) -> None:
        book = Ledger(engine, "race")
        start.wait()
        for _ in range(attempts):
            granted.append(book.reserve(cost) is not None)

    runners = [threading.Thread(target=worker, args=(engine,)) for engine in engines]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    try:
        assert len(granted) == threads * attempts
        assert sum(granted) == int(total // cost)  # 6 of 40, whoever wins the races
        totals = Ledger(engines[0], "race").totals()
        assert totals.reserved == pytest.approx(6 * cost) and totals.spent == 0
    finally:
        for engine in engines:
            engine.dispose()
