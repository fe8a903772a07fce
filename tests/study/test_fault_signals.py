"""Real workers under real faults, on the local PostgreSQL: SIGTERM and Ctrl-C, a killed parent, a paused worker,
two runs starting at once on a new database, and connections cut under a running study.

Issue 11, items 3, 5, 6, 7, 8 and 9. Each waits on what the database says, never on how fast this machine is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from automl.storage.ledger import Ledger
from automl.storage.models import TrialCostModel
from automl.study.recovery import INTERRUPTED
from tests.conftest import automl_lines

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
DEADLINE = 120.0
"""Seconds any wait may take before the test fails (a loaded machine is slow; a hang is a failure)."""


def start(study_file, url, env, *extra: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl", "run", str(study_file), "--storage", url, *extra],
                            cwd=study_file.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, **popen)


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="tiny", storage=url).get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - the study or its tables are not there yet
        return []


def trial_started(url: str) -> bool:
    """Whether the study has a trial, read in plain SQL: ``optuna.load_study`` would create Optuna's tables
    if they were missing, racing the worker that is creating them (a unique violation in PostgreSQL's
    catalog for whichever loses)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return bool(connection.scalar(sa.text("SELECT count(*) FROM trials")))
    except sa.exc.ProgrammingError:  # the tables are not there yet
        return False
    finally:
        engine.dispose()


def wait_for(condition, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + DEADLINE
    while not (found := condition()):
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before {what}: {process.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def running_workers(url: str, count: int = 1) -> list[int] | None:
    """The pids of the workers whose trials are running once ``count`` trials run (and have beaten once)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.select(TrialCostModel.worker_id, TrialCostModel.spent_seconds).where(
                TrialCostModel.state == "running")).all()
    except sa.exc.ProgrammingError:
        return None
    finally:
        engine.dispose()
    alive = [int(r.worker_id.rsplit(":", 1)[1]) for r in rows if r.spent_seconds > 0]
    return alive if len(alive) >= count else None


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie child of this process: reap it
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def ledger_settled(url: str) -> tuple[float, float, dict[int, TrialCostModel]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = {r.trial_number: r for r in connection.execute(sa.select(TrialCostModel)).all()}
        totals = Ledger(engine, "tiny").totals()
    finally:
        engine.dispose()
    return totals.reserved, totals.spent - sum(r.spent_seconds for r in rows.values()), rows


def assert_resumes_and_retries(study_file, url, env, interrupted: list[int]) -> None:
    """The next run retries each interrupted trial with its parameters and seed, and ends balanced."""
    done = subprocess.run([sys.executable, "-m", "automl", "run", str(study_file), "--storage", url],
                          cwd=study_file.parent, env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    by_number = {t.number: t for t in trials(url)}
    for number in interrupted:
        (retry,) = [t for t in by_number.values() if t.system_attrs.get("failed_trial") == number]
        assert by_number[number].params.items() <= retry.params.items()
        assert retry.user_attrs["seed"] == by_number[number].user_attrs["seed"]
    assert not [t for t in by_number.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    reserved, unbalanced, rows = ledger_settled(url)
    assert reserved == pytest.approx(0, abs=1e-9) and unbalanced == pytest.approx(0, abs=1e-6)
    assert set(rows) == set(by_number)


def assert_interrupted(url: str, pids: list[int]) -> list[int]:
    """The trials the stopped workers ran failed as interrupted and settled; their numbers."""
    stopped = [t for t in trials(url) if t.user_attrs.get("end_reason") == INTERRUPTED]
    assert len(stopped) == len(pids) and all(t.state == TrialState.FAIL for t in stopped)
    reserved, _, rows = ledger_settled(url)
    assert reserved == pytest.approx(0, abs=1e-9)
    assert all(rows[t.number].state == "failed" and rows[t.number].spent_seconds > 0 for t in stopped)
    return [t.number for t in stopped]


def test_sigterm_to_the_parent_stops_its_workers_and_fails_their_trials_as_interrupted(
        study_file, postgres_url, child_env):
    parent = start(study_file, postgres_url, child_env(), "--workers", "2")
    pids = wait_for(lambda: running_workers(postgres_url, 2), "two running trials", parent)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(DEADLINE) == 128 + signal.SIGTERM
    err = parent.stderr.read()
    assert automl_lines(err) == [
        "automl: interrupted by SIGTERM; run the same command again to resume (a study retries its interrupted "
        "trials)"], err
    assert "Traceback" not in err
    assert all(gone(pid) for pid in pids)
    assert_resumes_and_retries(study_file, postgres_url, child_env(), assert_interrupted(postgres_url, pids))


def test_ctrl_c_fails_the_running_trial_as_interrupted_and_the_next_run_retries_it(
        study_file, postgres_url, child_env):
    run = start(study_file, postgres_url, child_env(), start_new_session=True)
    pids = wait_for(lambda: running_workers(postgres_url), "a running trial", run)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C at a terminal sends: the whole process group
    assert run.wait(DEADLINE) == 128 + signal.SIGINT
    assert "Traceback" not in run.stderr.read()
    assert_resumes_and_retries(study_file, postgres_url, child_env(), assert_interrupted(postgres_url, pids))


def test_the_workers_of_a_killed_parent_stop(study_file, postgres_url, child_env):
    parent = start(study_file, postgres_url, child_env(), "--workers", "2")
    pids = wait_for(lambda: running_workers(postgres_url, 2), "two running trials", parent)
    parent.kill()
    parent.wait()
    wait_for(lambda: all(gone(pid) for pid in pids), "the orphaned workers to stop")
    assert_resumes_and_retries(study_file, postgres_url, child_env(), assert_interrupted(postgres_url, pids))


def test_a_paused_worker_whose_trial_was_taken_over_drops_its_result_and_goes_on(
        study_file, postgres_url, child_env):
    paused = start(study_file, postgres_url, child_env())
    (pid,) = wait_for(lambda: running_workers(postgres_url), "a running trial", paused)
    number = next(t.number for t in trials(postgres_url) if t.state == TrialState.RUNNING)
    paused.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2 + 1.5)  # past the grace period: its trial is taken for dead
        other = subprocess.run([sys.executable, "-m", "automl", "run", str(study_file), "--storage", postgres_url],
                               cwd=study_file.parent, env=child_env(), capture_output=True, text=True,
                               timeout=DEADLINE)
        assert other.returncode == 0, other.stderr
    finally:
        paused.send_signal(signal.SIGCONT)
    assert paused.wait(DEADLINE) == 0
    err = paused.stderr.read()
    assert f"automl: trial {number} was taken over by another worker while this one was paused" in err
    assert "Traceback" not in err
    by_number = {t.number: t for t in trials(postgres_url)}
    assert by_number[number].state == TrialState.FAIL and by_number[number].user_attrs["end_reason"] == "worker_died"
    reserved, unbalanced, _ = ledger_settled(postgres_url)
    assert reserved == pytest.approx(0, abs=1e-9) and unbalanced == pytest.approx(0, abs=1e-6)


def test_two_runs_started_at_once_on_a_new_database_both_create_and_run_the_study(
        write_study, postgres_url, child_env):
    path = write_study(n_trials=4)
    path.write_text(path.read_text().replace("lr = 0.05\n", "lr = { low = 0.01, high = 0.5, log = true }\n"))
    runs = [start(path, postgres_url, child_env()) for _ in range(2)]
    for run in runs:
        assert run.wait(DEADLINE) == 0, run.stderr.read()
    done = [t for t in trials(postgres_url) if t.state == TrialState.COMPLETE]
    assert len(done) == 4
    assert len({t.params["train.lr"] for t in done}) == 4  # two machines joining one study draw apart (item 2)


def terminate_connections(server: str, database: str, stop: threading.Event, every: float) -> list[int]:
    """Cut every connection to ``database`` (as a failover or a network cut would), every ``every`` seconds."""
    import psycopg

    cuts = []
    with psycopg.connect(server, autocommit=True) as admin:
        while not stop.wait(every):
            cuts.append(admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()[0])
    return cuts


def test_connections_cut_under_a_running_study_cost_retries_not_trials(write_study, postgres_url, pg_server,
                                                                        child_env):
    path = write_study(n_trials=6)
    stop = threading.Event()
    cuts: list[int] = []
    cutter = threading.Thread(target=lambda: cuts.extend(terminate_connections(
        pg_server, postgres_url.rsplit("/", 1)[1], stop, 0.4)))
    parent = start(path, postgres_url, child_env(), "--workers", "2")
    wait_for(lambda: trial_started(postgres_url), "a trial", parent)
    cutter.start()
    try:
        code = parent.wait(DEADLINE * 2)
    finally:
        stop.set()
        cutter.join()
    err = parent.stderr.read()
    assert code == 0 and "Traceback" not in err, err
    assert sum(cuts) > 0  # connections were cut while it ran
    done = [t for t in trials(postgres_url) if t.state == TrialState.COMPLETE]
    assert len(done) == 6
    reserved, unbalanced, _ = ledger_settled(postgres_url)
    assert reserved == pytest.approx(0, abs=1e-9) and unbalanced == pytest.approx(0, abs=1e-6)


def test_a_database_gone_for_longer_than_the_bound_stops_the_worker_with_one_line(
        study_file, postgres_url, pg_server, child_env):
    import psycopg

    database = postgres_url.rsplit("/", 1)[1]
    env = dict(child_env(), AUTOML_DB_RETRY_SECONDS="2")
    run = start(study_file, postgres_url, env)
    wait_for(lambda: running_workers(postgres_url), "a running trial", run)
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
        try:
            code = run.wait(DEADLINE)
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    err = run.stderr.read()
    lines = automl_lines(err)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("automl: error: lost the study's database"), err
    assert "Traceback" not in err
    time.sleep(2 + 1)  # the grace period: the next run takes the trial for dead and retries it
    assert_resumes_and_retries(study_file, postgres_url, child_env(), [])
    assert [t for t in trials(postgres_url) if t.user_attrs.get("end_reason") == "worker_died"]


def test_a_worker_joining_a_study_survives_a_cut_before_each_statement_it_makes(write_study, postgres_url, pg_server):
    """Every statement of a worker's start (``create_study`` on a study that exists) is retried when its
    connection is cut just before it: each distinct statement's first run finds its connection terminated."""
    import psycopg

    from automl.host import get_host
    from automl.study.config import load_study_file
    from automl.study.runner import Overrides, create_study, prepare

    prepared = prepare(load_study_file(write_study(n_trials=2)), get_host(), Overrides(storage=postgres_url))
    create_study(prepared)
    seen: set[str] = set()
    cut: list[str] = []

    def cut_before_first_run(conn, cursor, statement, parameters, context, executemany):
        if statement in seen:
            return
        seen.add(statement)
        pid = conn.connection.dbapi_connection.info.backend_pid
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        cut.append(statement.split()[0])

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", cut_before_first_run)
    try:
        study = create_study(prepared, new_session=False)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", cut_before_first_run)
    assert "INSERT" in cut or "UPDATE" in cut, cut  # its writes were cut too, not only its reads
    assert study.user_attrs["study_file"] == prepared.study_file.path
