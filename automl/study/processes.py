"""Several worker processes on one machine running one study, and the parent that watches them.

Each worker is ``python -m automl run STUDY.toml --worker ...``: the same study, its own device, a
share of the CPU cores. They coordinate only through the database (Optuna's trials, automl's
ledger), exactly as workers on other machines pointed at the same PostgreSQL URL do.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from automl.errors import UserError
from automl.interrupts import PARENT_PID_VAR, at_checkpoints, checkpoint
from automl.storage.retry import DatabaseLost
from automl.storage.urls import ENV_VAR
from automl.threads import threads_for

POLL_SECONDS = 0.5
STOP_SECONDS = 30.0
"""How long stopped workers have to fail and settle their trials before they are killed."""


FORWARDED = ("variant", "study_name", "n_trials", "total_budget", "trial_budget", "seed", "gpus_per_trial", "budgets",
             "seeds", "max_seeds", "tolerance", "plugin", "traceback", "accept_plugin_change", "accept_task_change")
"""The options a parent hands its workers, of those its command has: not the storage URL (it goes through their
environment), nor the device (each has its own), nor what only the parent does (``--workers``, ``--json``, its
report, the reference it tests against)."""


def worker_argv(args: argparse.Namespace, session: int, **given: Any) -> list[str]:
    """The parent's own command line (``args``, as its command parsed them) for its workers, with ``given``
    options in place of its own (``budgets=`` the one a worker trains): the study file, the parent's ``session``
    of the study (they sample apart by their index), and each of ``FORWARDED`` the parent was given. Each value
    is joined to its flag (``--plugin=PATH``), so that one starting with ``-`` is never read as an option."""
    options = {**vars(args), **given}
    argv = [options["study_file"], f"--session={session}"]
    for name in FORWARDED:
        value, flag = options.get(name), "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            argv += [f"{flag}={item}" for item in value]
        elif value is not None and value is not False:
            argv.append(f"{flag}={value}")
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


def threads_per_worker(n: int, requested: int | None = None) -> int:
    """The torch threads of each of ``n`` workers: the parent's (``--threads``, else ``OMP_NUM_THREADS``, else
    the cores it sees) split between them, so that their thread pools do not fight for the cores."""
    return max(1, threads_for(requested) // n)


def child_env(url: str) -> dict[str, str]:
    """The environment of a process this one starts for the same study: the storage URL (so its password is
    never on a command line), this process as its parent, and the same automl on its path."""
    env = dict(os.environ, **{ENV_VAR: url, PARENT_PID_VAR: str(os.getpid())})
    # The child imports the same automl as this process, installed or from a checkout.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def start_workers(argv: Sequence[str], url: str, devices: Sequence[str], command: str = "run",
                  envs: Sequence[dict[str, str]] | None = None, threads: int | None = None) -> list[subprocess.Popen]:
    """Start one ``automl COMMAND --worker`` per device (``run``, or ``compare``); the storage URL goes through
    the environment, so its password is never on a command line. ``envs``: each worker's own additions to
    it (the GPUs it sees); ``threads``: the parent's ``--threads``, which its workers split."""
    env = child_env(url)
    threads = threads_per_worker(len(devices), threads)
    envs = envs or [{} for _ in devices]
    return [subprocess.Popen([sys.executable, "-m", "automl", command, *argv, "--worker", str(index),
                              "--device", device, "--threads", str(threads)], env={**env, **envs[index]})
            for index, device in enumerate(devices)]


def watch(study: optuna.Study, workers: list[subprocess.Popen],
          on_trial: Callable[[optuna.Study, FrozenTrial], object]) -> int:
    """Show each trial as it finishes (read from the database) until every worker has exited;
    returns the first non-zero exit status of a worker, else 0.

    Interrupted (Ctrl-C, SIGTERM), the workers are told to stop (SIGTERM: each fails its running
    trial as interrupted and settles it), given ``STOP_SECONDS`` to do so, then killed.
    """
    shown: set[int] = set()

    def report() -> None:
        try:
            trials = study.get_trials(deepcopy=False)
            for trial in trials:
                if trial.state.is_finished() and trial.number not in shown:
                    on_trial(study, trial)
                    shown.add(trial.number)
        except DatabaseLost:
            pass  # the display waits for the database as the workers do; they decide whether to stop

    try:
        with at_checkpoints():
            while any(w.poll() is None for w in workers):
                report()
                checkpoint()
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        stop(workers)
        raise
    report()
    return next((w.returncode for w in workers if w.returncode), 0)


def stop(workers: list[subprocess.Popen]) -> None:
    """SIGTERM the workers still running, wait ``STOP_SECONDS`` for them, then kill the rest."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for w in workers:
        try:
            w.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()


def worker_failure(status: int) -> str:
    """What a worker's non-zero exit status says, for the parent's one line."""
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.valid_signals() else f"signal {-status}"
        return (f"a worker was killed by {name}; its running trial is retried by the next run of the same "
                "command")
    return f"a worker exited with status {status}; its error is above"


__all__ = ["FORWARDED", "check_workers", "child_env", "split_devices", "start_workers", "stop", "threads_per_worker", "watch",
           "worker_argv", "worker_failure"]
