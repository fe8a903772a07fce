"""The overhead of automl's study loop over plain ``optuna.create_study(...).optimize``, per trial.

What it measures: trials per second with a no-op trainer. automl's side is its real worker loop
(``automl.study.worker.Worker``: recover dead workers' trials, reserve time and trial slot in the
ledger, ask, tie the reservation, heartbeat, tell, settle; every call retried on transient errors) around an objective that suggests every trick's parameters through ``select_tricks`` and
returns at once instead of training. Plain Optuna's side is ``study.optimize`` over an objective
that makes the same suggestions, with the same sampler (random, seeded) and the same storage (an
``RDBStorage`` with a heartbeat every 30 s, as automl's), in a fresh study. Both run on SQLite and on
PostgreSQL with 1 and 4 worker processes (each process its own study object, as workers are).

Run it::

    python benchmarks/storage_overhead.py                       # about a minute
    python benchmarks/storage_overhead.py --trials 200 --pg postgresql://root@127.0.0.1:5432/postgres

One line per configuration, the median over ``--pairs`` pairs of runs in alternating order; the
last is ``ratio=<lowest of those medians>``. Goal: at least 0.8.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

STUDY = """
[study]
name = "bench"
sampler = "random"
pruner = "none"
trial_budget = "1steps"
n_trials = 1000
seed = 0
heartbeat_interval = 30

[task]
dataset = "synthetic"
model = "small_cnn"
dataset_args = { shape = [1, 8, 8], n_train = 32, n_val = 16, n_test = 16, num_classes = 4 }
"""


def _setup(folder: str):
    from automl.host import get_host
    from automl.study.config import load_study_file
    from automl.study.tricks import study_tricks
    from automl.run import TrialContext

    from automl.files import atomic_write

    path = Path(folder) / "study.toml"
    atomic_write(path, textwrap.dedent(STUDY))  # the worker processes write it at once
    study_file = load_study_file(path)
    tricks, settings = study_tricks(study_file, get_host())

    def suggest(trial) -> float:
        from automl.space import select_tricks

        context = TrialContext(study_name=trial.study.study_name, trial_number=trial.number,
                               best_checkpoint=lambda: None)
        select_tricks(trial, tricks, settings, context)
        study_file.config.train.resolve(trial)
        return 0.5

    return study_file, suggest


class Suggesting:
    """The worker's side of ``suggest``: the same suggestions in ``begin``, no training, nothing recorded."""

    def __init__(self, suggest) -> None:
        self.suggest = suggest

    def begin(self, trial):
        from automl.study.plan import TrialPlan

        self.value = self.suggest(trial)
        return TrialPlan(tricks=[], settings=None, seed=0, context=None, attrs={})

    def train(self, trial, plan):
        from optuna.trial import TrialState

        from automl.study.plan import Outcome

        return Outcome(TrialState.COMPLETE, 0.0, {}, value=self.value)


def _worker(kind: str, url: str, name: str, trials: int, total: int, folder: str, start) -> None:
    import optuna

    from automl.storage import open_storage
    from automl.study.runner import make_sampler
    from automl.study.worker import Worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_file, suggest = _setup(folder)
    seed = uuid.uuid4().int % 10_000
    if kind == "optuna":
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=30)  # as an Optuna user with heartbeats
        study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler("random", seed))
        start.wait()
        study.optimize(suggest, n_trials=trials, gc_after_trial=False)
        return
    from automl.budget import Budget
    from automl.storage.ledger import Ledger
    from automl.storage.optuna_adapter import study_engine

    storage = open_storage(url)  # automl's: every call retried on a transient error
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler("random", seed))
    worker = Worker(study, Ledger(study_engine(study), name), Budget(1, "steps"), total, interval=30, grace=60)
    start.wait()
    while (trial := worker.next_trial()) is not None:
        worker.run(trial, Suggesting(suggest))


def measure(kind: str, url: str, workers: int, trials: int, folder: str) -> float:
    """Trials per second of ``workers`` processes running ``trials`` trials in all, in a new study."""
    import optuna

    from automl.storage.ledger import Ledger
    from automl.storage.schema import ensure_schema
    from automl.storage.optuna_adapter import study_engine

    name = f"{kind}-{uuid.uuid4().hex[:8]}"
    ensure_schema(url)
    study = optuna.create_study(storage=url, study_name=name)
    Ledger(study_engine(study), name).open(None)
    context = mp.get_context("spawn")
    start = context.Barrier(workers + 1)
    procs = [context.Process(target=_worker, args=(kind, url, name, trials // workers, trials, folder, start))
             for _ in range(workers)]
    for p in procs:
        p.start()
    start.wait(timeout=300)  # a worker that died before the start breaks the barrier instead of hanging
    began = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - began
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    done = len(optuna.load_study(study_name=name, storage=url).trials)
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=120, help="trials per configuration and side")
    parser.add_argument("--pairs", type=int, default=2,
                        help="pairs of runs per configuration, in alternating order (A B, B A, ...); median ratio")
    parser.add_argument("--pg", default="postgresql://root@127.0.0.1:5432/postgres",
                        help="a PostgreSQL URL (a scratch database is created beside it)")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        configs = [("sqlite", f"sqlite:///{folder}/bench.db", 1)]
        pg = _scratch_postgres(args.pg)
        if pg:
            configs += [("postgresql", pg[0], 1), ("postgresql", pg[0], 4)]
        try:
            for backend, url, workers in configs:
                rates: dict[str, list[float]] = {"optuna": [], "automl": []}
                for pair in range(args.pairs):
                    # Alternate which side runs first: the database grows and the machine drifts.
                    for kind in ("optuna", "automl") if pair % 2 == 0 else ("automl", "optuna"):
                        rates[kind].append(measure(kind, url, workers, args.trials, folder))
                pair_ratios = [a / o for a, o in zip(rates["automl"], rates["optuna"])]
                ratio = statistics.median(pair_ratios)
                ratios.append(ratio)
                print(f"{backend:<10} workers={workers}  optuna {statistics.median(rates['optuna']):7.1f} trials/s  "
                      f"automl {statistics.median(rates['automl']):7.1f} trials/s  ratio {ratio:.3f}  "
                      f"(pairs: {' '.join(f'{r:.3f}' for r in pair_ratios)})", flush=True)
        finally:
            if pg:
                pg[1]()
    print(f"ratio={min(ratios):.3f}")


def _scratch_postgres(server: str):
    """(URL of a new database, a function that drops it), or None when no server answers."""
    try:
        import psycopg

        admin = psycopg.connect(server, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        print(f"postgresql skipped: {exc}".splitlines()[0])
        return None
    name = f"automl_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return f"{server.rsplit('/', 1)[0]}/{name}", drop


if __name__ == "__main__":
    main()
