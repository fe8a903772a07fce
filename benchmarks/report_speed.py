"""How long ``automl report`` takes on a study of 500 trials, end to end on the CPU (goal: under 10 s).

What it measures: the wall-clock time of ``automl report STUDY -o report.html`` on a study built
in a temporary SQLite file. The study looks like a real one: every built-in trick is searched
(their real search spaces, chosen through ``select_tricks`` with a seeded random sampler, so
about 16 tricks' parameters per trial), each trial carries automl's user attributes (tricks,
device-seconds, why it ended), about a quarter are pruned after one or two of their four rungs,
a few failed, and the ledger holds a total budget. Validation errors are synthetic: a base error,
a gain for some tricks, and noise. Two timings: ``python -m automl report ...`` as a subprocess
(import time counts: this is what a person waits for) and ``automl.cli.main([...])`` in this
process on a warm second call (what the report itself costs once Python, torch and matplotlib
are loaded); and ``python -m automl --version``, the start-up every command pays. Beside them, the parameter-importance evaluators the report could use, timed alone on
the same study (why it uses PED-ANOVA).

Run it::

    python benchmarks/report_speed.py                  # about half a minute, mostly building the study
    python benchmarks/report_speed.py --trials 2000 --repeats 5

Prints the seconds of each run, and last ``ratio=<median subprocess seconds / 10 s>``: the share
of the goal used, so at most 1 meets it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

GOAL_SECONDS = 10.0
STUDY = """
[study]
name = "bench"
sampler = "random"
pruner = "median"
trial_budget = "5s"
total_budget = "3000s"
seed = 0

[task]
dataset = "synthetic"
model = "small_cnn"
dataset_args = { shape = [1, 8, 8], n_train = 32, n_val = 16, n_test = 16, num_classes = 4 }

[train]
lr = { low = 0.01, high = 0.5, log = true }
rungs = 4

[tricks]
include = "*"
"""
HELPFUL = {"cosine": 0.012, "warmup": 0.006, "label_smoothing": 0.004, "ema": 0.008, "mixup": -0.01}


def build_study(folder: Path, url: str, n_trials: int, seed: int) -> str:
    """Write a study of ``n_trials`` finished trials to ``url``; returns its name."""
    import optuna
    from optuna.trial import FrozenTrial, TrialState

    from automl.host import get_host
    from automl.space import select_tricks
    from automl.storage import open_storage
    from automl.storage.models import BudgetLedgerModel, session_scope
    from automl.storage.schema import ensure_schema
    from automl.study.config import load_study_file
    from automl.study.tricks import study_tricks
    from automl.run import TrialContext

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = folder / "study.toml"
    path.write_text(textwrap.dedent(STUDY))
    study_file = load_study_file(path)
    tricks, settings = study_tricks(study_file, get_host())
    # The parameters come from the real search spaces, asked of an in-memory study; the trials are
    # then written to SQLite in one go, with made-up times and errors.
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = random.Random(seed)
    clock = datetime(2026, 11, 21, 9, 0, 0)
    trials = []
    for number in range(n_trials):
        trial = scratch.ask()
        context = TrialContext(study_name="bench", trial_number=number, best_checkpoint=lambda: None)
        names = [t.name for t in select_tricks(trial, tricks, settings, context)]
        study_file.config.train.resolve(trial)
        final = 0.12 - sum(HELPFUL.get(n, 0.0) for n in names) + rng.gauss(0, 0.01)
        curve = {rung: final + 0.08 / (rung + 1) for rung in range(4)}
        draw = rng.random()
        if draw < 0.03:
            state, rungs, reason = TrialState.FAIL, rng.randint(0, 3), "nan_loss"
        elif draw < 0.28:
            state, rungs, reason = TrialState.PRUNED, rng.randint(1, 2), "pruned"
        else:
            state, rungs, reason = TrialState.COMPLETE, 4, "complete"
        spent = 5.0 * (rungs or 1) / 4 + rng.uniform(0.1, 0.4)
        start, clock = clock, clock + timedelta(seconds=spent + rng.uniform(0.2, 1.0))
        trials.append(FrozenTrial(
            number=number, trial_id=number, state=state, value=final if state == TrialState.COMPLETE else None,
            values=None, datetime_start=start, datetime_complete=start + timedelta(seconds=spent),
            params=trial.params, distributions=trial.distributions,
            user_attrs={"tricks": names, "spent_seconds": spent, "end_reason": reason, "steps": 100 * rungs},
            system_attrs={}, intermediate_values={r: curve[r] for r in range(rungs)}))
    ensure_schema(url)
    study = optuna.create_study(storage=open_storage(url), study_name="bench")
    study.add_trials(trials)
    with session_scope(open_storage(url).engine) as session:
        session.add(BudgetLedgerModel(study_name="bench", total_seconds=3000.0, reserved_seconds=0.0,
                                      spent_seconds=sum(t.user_attrs["spent_seconds"] for t in trials)))
    return "bench"


def time_evaluators(url: str, name: str) -> None:
    """Seconds of ``optuna.importance.get_param_importances`` per evaluator, and how many parameters each scores."""
    import warnings

    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

    study = optuna.load_study(study_name=name, storage=url)
    study.get_trials()  # loaded once, outside the timings
    for label, evaluator in (("PED-ANOVA (the report's)", PedAnovaImportanceEvaluator()),
                             ("fANOVA, 64 trees (its defaults)", FanovaImportanceEvaluator(seed=0)),
                             ("fANOVA, 16 trees", FanovaImportanceEvaluator(n_trees=16, seed=0))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            began = time.perf_counter()
            scored = get_param_importances(study, evaluator=evaluator)
            print(f"importances {label:<38} {time.perf_counter() - began:6.2f} s, {len(scored)} parameters scored")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500, help="trials in the study (default 500)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", metavar="DIR", help="also copy the last report here (to look at it)")
    args = parser.parse_args()

    from automl.cli import main as automl

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'bench.db'}"
        began = time.perf_counter()
        name = build_study(folder, url, args.trials, args.seed)
        print(f"built a study of {args.trials} trials in {time.perf_counter() - began:.1f} s")
        command = ["report", name, "--storage", url, "-o", str(folder / "report.html"), "--png", str(folder / "png")]

        outside = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "automl", *command], check=True, capture_output=True)
            outside.append(time.perf_counter() - began)
            print(f"subprocess  python -m automl report   {outside[-1]:6.2f} s", flush=True)
        startup = []
        for _ in range(args.repeats):  # what any automl command pays before it starts (Python, torch, ...)
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "automl", "--version"], check=True, capture_output=True)
            startup.append(time.perf_counter() - began)
        print(f"subprocess  python -m automl --version {statistics.median(startup):6.2f} s (median: start-up alone)")
        inside = []
        for _ in range(args.repeats + 1):
            began = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # the paths it prints
                assert automl(command) == 0
            inside.append(time.perf_counter() - began)
            print(f"in-process  automl.cli.main(report)   {inside[-1]:6.2f} s"
                  + ("  (first call: imports matplotlib)" if len(inside) == 1 else ""), flush=True)
        time_evaluators(url, name)
        size = (folder / "report.html").stat().st_size
        print(f"report.html {size / 1024:.0f} KiB; pngs: {', '.join(sorted(p.name for p in (folder / 'png').iterdir()))}")
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            (Path(args.keep) / "report.html").write_bytes((folder / "report.html").read_bytes())
    print(f"median: subprocess {statistics.median(outside):.2f} s, in-process (warm) "
          f"{statistics.median(inside[1:]):.2f} s; goal < {GOAL_SECONDS:.0f} s")
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores")
    print(f"ratio={statistics.median(outside) / GOAL_SECONDS:.3f}")


if __name__ == "__main__":
    main()
