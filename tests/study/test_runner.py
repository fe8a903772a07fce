"""The study runner: every sampler and pruner runs, trials record why they ended, the ledger bounds the budget."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
import torch

from automl.budget import Budget
from automl.errors import UserError
from automl.host import get_host
from automl.study.config import load_study_file
from automl.storage.ledger import Ledger, LedgerTotals
from automl.storage.models import TrialCostModel
from automl.storage.schema import ensure_schema
from automl.study.runner import Overrides, create_study, prepare, resolve_device, run_study, study_engine


@pytest.mark.parametrize(("sampler", "pruner"), [("tpe", "median"), ("random", "hyperband"), ("cmaes", "none"),
                                                 ("gp", "median")])
def test_each_sampler_and_pruner_runs_a_study(write_study, sqlite_url, sampler, pruner):
    path = write_study(n_trials=3)
    path.write_text(path.read_text().replace('sampler = "random"', f'sampler = "{sampler}"')
                    .replace('pruner = "none"', f'pruner = "{pruner}"'))
    prepared = prepare(load_study_file(path), get_host(), Overrides(storage=sqlite_url))
    study = run_study(prepared)
    assert len(study.trials) == 3
    assert type(study.sampler).__name__.lower().startswith(sampler[:2])
    for trial in study.trials:
        assert trial.user_attrs["end_reason"] in ("complete", "pruned")
        assert trial.user_attrs["spent_seconds"] > 0
        assert set(trial.user_attrs["tricks"]) <= set(get_host().tricks)
        assert len(trial.intermediate_values) >= 1


def test_cli_overrides_win_over_the_file(write_study, sqlite_url):
    prepared = prepare(load_study_file(write_study()), get_host(),
                       Overrides(storage=sqlite_url, study_name="other", n_trials=1, trial_budget="4steps", seed=7))
    study = run_study(prepared)
    assert study.study_name == "other" and len(study.trials) == 1
    assert study.trials[0].user_attrs["steps"] == 4
    assert prepared.seed == 7 and study.trials[0].user_attrs["seed"] == 7  # trains with the seed too


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
    assert ledger.estimate(Budget(100, "steps")) == 0
    ledger.settle(ledger.reserve(Budget(100, "steps")), 0, 6.0, "complete")
    assert ledger.estimate(Budget(100, "steps")) == pytest.approx(6.0)
    assert ledger.reserve(Budget(100, "steps")) is None  # 4 s left < 6 s


def test_after_a_study_the_ledger_agrees_with_the_trials(write_study, sqlite_url):
    path = write_study(n_trials=50, trial_budget="0.3s")
    path.write_text(path.read_text().replace("n_trials = 50", 'n_trials = 50\ntotal_budget = "2.5s"'))
    prepared = prepare(load_study_file(path), get_host(), Overrides(storage=sqlite_url))
    study = run_study(prepared)
    trials = study.get_trials()
    assert 2 <= len(trials) < 50 and all(t.state.is_finished() for t in trials)
    book = Ledger(study_engine(study), "tiny")
    costs = sa.select(TrialCostModel.spent_seconds, TrialCostModel.state, TrialCostModel.trial_number)
    with study_engine(study).connect() as connection:
        rows = connection.execute(costs.where(TrialCostModel.study_name == "tiny")).all()
    totals = book.totals()
    assert totals.reserved == pytest.approx(0.0, abs=1e-9)
    assert totals.spent == pytest.approx(sum(r.spent_seconds for r in rows))
    assert totals.spent == pytest.approx(sum(t.user_attrs["spent_seconds"] for t in trials))
    assert sorted(r.trial_number for r in rows) == [t.number for t in trials]
    assert {r.state for r in rows} <= {"complete", "pruned"}
    # The study stopped only once the next trial no longer fitted in what was left.
    assert 2.5 - totals.spent < book.estimate(Budget(0.3, "seconds"))


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is visible; use --device cpu"):
            resolve_device("cuda:0")


def test_the_ledger_bounds_the_trial_count_and_gives_back_unused_reservations(ledger):
    first, second = ledger.reserve(1.0, n_trials=2), ledger.reserve(1.0, n_trials=2)
    assert None not in (first, second) and first != second
    assert ledger.reserve(1.0, n_trials=2) is None  # two trials reserved of two
    assert ledger.reserve(1.0, n_trials=3) is not None  # a larger n_trials (a resumed study) leaves room
    assert ledger.release(second) and not ledger.release(second)  # given back once
    assert ledger.totals() == LedgerTotals(10.0, 2.0, 0.0, trials=2)
    ledger.heartbeat(first, 0, 1.5)  # then its worker died
    assert ledger.settle_stale(0, retried=True)  # its retry takes its place among n_trials
    assert not ledger.settle_stale(0, retried=True) and not ledger.settle(first, 0, 2.0, "complete")  # once
    assert ledger.totals() == LedgerTotals(10.0, 1.0, 1.5, trials=1)


def test_a_reservation_whose_trial_never_sent_a_heartbeat_is_reclaimed(ledger):
    running, orphan = ledger.reserve(2.0), ledger.reserve(3.0)
    ledger.heartbeat(running, 0, 0.5)
    assert ledger.reclaim(older_than=60) == 0  # both were made just now
    time.sleep(0.05)
    assert ledger.reclaim(older_than=0.01) == 1  # the orphan; a reservation tied to its trial stays
    assert ledger.totals() == LedgerTotals(10.0, 2.0, 0.0, trials=1)
    with ledger.engine.connect() as connection:
        rows = connection.execute(sa.select(TrialCostModel.id, TrialCostModel.state)).all()
    assert rows == [(running, "running")] and orphan != running


def test_a_dead_workers_reservation_is_reclaimed_and_the_study_still_runs_n_trials(write_study, sqlite_url):
    path = write_study(n_trials=3)
    path.write_text(path.read_text().replace("seed = 0", "seed = 0\nheartbeat_interval = 1\ngrace_period = 1"))
    prepared = prepare(load_study_file(path), get_host(), Overrides(storage=sqlite_url))
    study = create_study(prepared)
    # What a worker killed before its trial's first heartbeat leaves behind, two seconds ago.
    book = Ledger(study_engine(study), "tiny")
    orphan = book.reserve(5.0, n_trials=3)
    with study_engine(study).begin() as connection:
        connection.execute(sa.update(TrialCostModel).where(TrialCostModel.id == orphan).values(
            heartbeat_at=sa.func.datetime("now", "-2 seconds")))
    run_study(prepared, study)
    assert len(study.trials) == 3
    assert book.totals().reserved == pytest.approx(0.0, abs=1e-9) and book.totals().trials == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_parent_of_workers_keeps_the_data_off_the_gpu(write_study):
    prepared = prepare(load_study_file(write_study()), get_host(), Overrides(device="cuda"), data_on_cpu=True)
    assert prepared.device.type == "cuda" and prepared.data.train.x.device.type == "cpu"
    prepared = prepare(load_study_file(write_study()), get_host(), Overrides(device="cuda"))
    assert prepared.data.train.x.device.type == "cuda"
