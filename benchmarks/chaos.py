"""A study under fire: 40 trials, 4 workers on PostgreSQL, workers killed with SIGKILL at random moments and every
database connection cut several times; then one re-run, and the invariants checked.

The invariants (issue 11's "done when"): exactly ``n_trials`` configurations (a retry chain counts
once), none RUNNING or WAITING, no two trials outside a retry chain with the same parameters, the
ledger's spent equal to the sum of its cost rows, nothing reserved, a cost row for every trial.

Run it (a fresh database is made on the server and dropped after)::

    python benchmarks/chaos.py                           # about 3 minutes on 2 cores
    python benchmarks/chaos.py --kills 8 --cuts 6 --seed 1

Prints the figures and ``invariants=ok`` (exit 0), or what broke (exit 1).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automl.storage.ledger import Ledger  # noqa: E402
from automl.storage.models import TrialCostModel  # noqa: E402

STUDY = """
[study]
name = "chaos"
sampler = "tpe"
pruner = "median"
trial_budget = "1s"
n_trials = {n}
seed = 0
heartbeat_interval = 1
grace_period = 2
artifacts = "{artifacts}"

[task]
dataset = "synthetic"
model = "small_cnn"
model_args = {{ width = 0.25 }}
dataset_args = {{ shape = [1, 8, 8], n_train = 96, n_val = 48, n_test = 48, num_classes = 4 }}

[train]
batch_size = 32
lr = {{ low = 0.01, high = 0.5, log = true }}
rungs = 2
eval_batch_size = 256
"""


def running_pids(url: str) -> list[int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            ids = connection.scalars(sa.select(TrialCostModel.worker_id).where(TrialCostModel.state == "running"))
            return [int(i.rsplit(":", 1)[1]) for i in ids]
    except sa.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()


def kill_workers(url: str, kills: int, rng: random.Random, stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL a worker in the middle of its trial, every 3 to 8 seconds, ``kills`` times."""
    while len(killed) < kills and not stop.wait(rng.uniform(3, 8)):
        pids = running_pids(url)
        if pids:
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass


def cut_connections(server: str, database: str, cuts: int, rng: random.Random, stop: threading.Event,
                    done: list[int]) -> None:
    """Terminate every connection to the study's database, every 2 to 6 seconds, ``cuts`` times."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as admin:
        while len(done) < cuts and not stop.wait(rng.uniform(2, 6)):
            done.append(admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchone()[0])


def run(study: Path, url: str, workers: int) -> tuple[int, str]:
    process = subprocess.run([sys.executable, "-m", "automl", "run", str(study), "--storage", url,
                              "--workers", str(workers)], cwd=study.parent, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    return process.returncode, process.stderr


def check(url: str, n_trials: int) -> list[str]:
    """What breaks the invariants; empty when none does."""
    trials = optuna.load_study(study_name="chaos", storage=url).get_trials(deepcopy=False)
    problems = []
    stuck = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if stuck:
        problems.append(f"trials left running or waiting: {stuck}")
    firsts = [t for t in trials if "failed_trial" not in t.system_attrs]
    if len(firsts) != n_trials:
        problems.append(f"{len(firsts)} configurations, not {n_trials}")
    params = [tuple(sorted(t.params.items())) for t in firsts]
    if len(set(params)) != len(params):
        problems.append(f"{len(params) - len(set(params))} repeated draws outside a retry chain")
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = {r.trial_number: r for r in connection.execute(sa.select(TrialCostModel)).all()}
    totals = Ledger(engine, "chaos").totals()
    engine.dispose()
    if set(rows) != {t.number for t in trials}:
        problems.append(f"cost rows {sorted(set(rows) ^ {t.number for t in trials})} do not match the trials")
    if abs(totals.reserved) > 1e-6:
        problems.append(f"{totals.reserved:.3f} s still reserved")
    if abs(totals.spent - sum(r.spent_seconds for r in rows.values())) > 1e-6:
        problems.append(f"ledger spent {totals.spent:.3f} s != the cost rows' {sum(r.spent_seconds for r in rows.values()):.3f} s")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("AUTOML_TEST_POSTGRES",
                                                           "postgresql://root@127.0.0.1:5432/postgres"))
    parser.add_argument("--n-trials", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--cuts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import psycopg

    database = f"automl_chaos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    url = f"{args.server.rsplit('/', 1)[0]}/{database}"
    rng = random.Random(args.seed)
    try:
        with tempfile.TemporaryDirectory() as folder:
            study = Path(folder) / "chaos.toml"
            study.write_text(STUDY.format(n=args.n_trials, artifacts=(Path(folder) / "artifacts").as_posix()))
            stop, killed, cut = threading.Event(), [], []
            faults = [threading.Thread(target=kill_workers, args=(url, args.kills, rng, stop, killed)),
                      threading.Thread(target=cut_connections, args=(args.server, database, args.cuts, rng, stop,
                                                                     cut))]
            started = time.perf_counter()
            for thread in faults:
                thread.start()
            first, first_err = run(study, url, args.workers)
            stop.set()
            for thread in faults:
                thread.join()
            time.sleep(2 + 1)  # the grace period: the last killed workers' trials are stale
            second, second_err = run(study, url, args.workers)
            seconds = time.perf_counter() - started
            trials = optuna.load_study(study_name="chaos", storage=url).get_trials(deepcopy=False)
            problems = check(url, args.n_trials)
            if second != 0:
                problems.append(f"the re-run exited {second}: {second_err.strip().splitlines()[-1:]}")
            tracebacks = first_err.count("Traceback") + second_err.count("Traceback")
            if tracebacks:
                problems.append(f"{tracebacks} tracebacks printed")
    finally:
        with psycopg.connect(args.server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    print(f"n_trials={args.n_trials} workers={args.workers} kills={len(killed)} connection_cuts={len(cut)} "
          f"(connections cut: {sum(cut)}) first_run_exit={first} re_run_exit={second}")
    print(f"trials={len(trials)} retries={sum('failed_trial' in t.system_attrs for t in trials)} "
          + " ".join(f"{k.lower()}={v}" for k, v in states.items() if v) + f" wall={seconds:.0f}s")
    for problem in problems:
        print(f"BROKEN: {problem}")
    print("invariants=" + ("ok" if not problems else "broken"))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
