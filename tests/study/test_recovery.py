"""Crash recovery: a worker killed with SIGKILL mid-trial; the study is run again and finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from automl.cli import main
from automl.storage.ledger import Ledger
from automl.storage.models import TrialCostModel


def beating_trial(url: str) -> int | None:
    """The number of a trial after the first whose worker has sent a heartbeat (its cost row has spent
    seconds), once the study's tables exist; else None. Plain SQL: ``optuna.load_study`` would create
    Optuna's tables if they were missing, racing the worker that is creating them."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(sa.select(TrialCostModel.trial_number).where(
                TrialCostModel.state == "running", TrialCostModel.trial_number >= 1,
                TrialCostModel.spent_seconds > 0))
    except sa.exc.DBAPIError:  # the tables are not there yet
        return None
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.mark.slow
def test_a_killed_worker_is_failed_settled_and_retried_once(write_study, url, tmp_path, capsys, child_env):
    study = write_study(n_trials=3, trial_budget="2s")
    study.write_text(study.read_text().replace("seed = 0", "seed = 0\nheartbeat_interval = 1\ngrace_period = 2"))
    env = child_env()
    worker = subprocess.Popen([sys.executable, "-m", "automl", "run", str(study), "--storage", url],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        # Mid-trial, once a heartbeat has landed: a fixed wait would depend on the machine's speed, and a
        # trial killed before its first heartbeat is settled to 0 s by another path (tested elsewhere).
        while (killed := beating_trial(url)) is None:
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, "no second trial sent a heartbeat"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    before = {t.number: t for t in optuna.load_study(study_name="tiny", storage=url).trials}
    done_before = {n: t.value for n, t in before.items() if t.state == TrialState.COMPLETE}
    assert done_before and before[killed].state == TrialState.RUNNING
    time.sleep(2.5)  # the grace period passes: the killed worker's trial is stale

    assert main(["run", str(study), "--storage", url]) == 0, capsys.readouterr().err
    trials = {t.number: t for t in optuna.load_study(study_name="tiny", storage=url).trials}
    assert {n: trials[n].value for n in done_before} == done_before  # no completed trial lost
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1  # retried once, with the same parameters
    (retry,) = retries
    assert retry.params == trials[killed].params and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["seed"] == trials[killed].user_attrs["seed"] != trials[killed - 1].user_attrs["seed"]
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 3  # n_trials configurations

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = {r.trial_number: r for r in connection.execute(sa.select(TrialCostModel)).all()}
        totals = Ledger(engine, "tiny").totals()
    finally:
        engine.dispose()
    assert rows[killed].state == "failed"
    assert 0 < rows[killed].spent_seconds < 2.5 + 1  # settled to its last heartbeat
    assert set(rows) == set(trials)
    assert totals.reserved == pytest.approx(0.0, abs=1e-9)
    assert totals.spent == pytest.approx(sum(r.spent_seconds for r in rows.values()))
    assert totals.trials == 3  # the retry took the killed trial's place
