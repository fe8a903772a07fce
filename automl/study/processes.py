"""Several worker processes on one machine running one study, and the parent that watches them.

Each worker is ``python -m automl run STUDY.toml --worker ...``: the same study, its own device, a
share of the CPU cores. They coordinate only through the database (Optuna's trials, automl's
ledger), exactly as workers on other machines pointed at the same PostgreSQL URL do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from automl.errors import UserError
from automl.storage.urls import ENV_VAR

POLL_SECONDS = 0.5
SEED_STRIDE = 7919
"""A prime: worker i samples with seed + SEED_STRIDE * (i + 1), far from the seeds trials train with."""


def worker_seed(seed: int, worker: int) -> int:
    """The sampler seed of worker ``worker`` (0-based) of ``--workers N``, so the workers sample different points."""
    return seed + SEED_STRIDE * (worker + 1)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The parent's own ``automl run`` options, for its workers (storage and device are handed over apart)."""
    argv = [args.study_file]
    for flag, value in (("--variant", args.variant), ("--study-name", args.study_name),
                        ("--n-trials", args.n_trials), ("--total-budget", args.total_budget),
                        ("--trial-budget", args.trial_budget), ("--seed", args.seed)):
        if value is not None:
            argv += [flag, str(value)]
    for path in args.plugin:
        argv += ["--plugin", path]
    for flag, on in (("--traceback", args.traceback), ("--accept-plugin-change", args.accept_plugin_change)):
        if on:
            argv.append(flag)
    return argv


def check_workers(n: int, url: str) -> None:
    """Refuse several workers on SQLite before anything runs: it allows one writer at a time."""
    if n > 1 and url.startswith("sqlite"):
        raise UserError(f"--workers {n} needs a server database: SQLite allows one writer; "
                        "use --storage postgresql://...")


def split_devices(text: str | None, n: int) -> list[str]:
    """``cuda:0,cuda:1`` handed out round-robin to ``n`` workers; one device (or auto) for all."""
    names = [d.strip() for d in (text or "auto").split(",") if d.strip()] or ["auto"]
    return [names[i % len(names)] for i in range(n)]


def threads_per_worker(n: int) -> int:
    return max(1, (os.cpu_count() or 1) // n)


def start_workers(argv: Sequence[str], url: str, devices: Sequence[str]) -> list[subprocess.Popen]:
    """Start one ``automl run --worker`` per device; the storage URL goes through the environment,
    so its password is never on a command line."""
    env = dict(os.environ, **{ENV_VAR: url})
    # The child imports the same automl as this process, installed or from a checkout.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    threads = threads_per_worker(len(devices))
    return [subprocess.Popen([sys.executable, "-m", "automl", "run", *argv, "--worker", str(index),
                              "--device", device, "--threads", str(threads)], env=env)
            for index, device in enumerate(devices)]


def watch(study: optuna.Study, workers: list[subprocess.Popen],
          on_trial: Callable[[optuna.Study, FrozenTrial], object]) -> int:
    """Show each trial as it finishes (read from the database) until every worker has exited;
    returns the first non-zero exit code of a worker, else 0."""
    shown: set[int] = set()

    def report() -> None:
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in shown:
                shown.add(trial.number)
                on_trial(study, trial)

    try:
        while any(w.poll() is None for w in workers):
            report()
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait()
        raise
    report()
    return next((w.returncode for w in workers if w.returncode), 0)


__all__ = ["check_workers", "split_devices", "start_workers", "threads_per_worker", "watch", "worker_argv",
           "worker_seed"]
