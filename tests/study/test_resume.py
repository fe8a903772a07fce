"""A trial stopped by SIGKILL or SIGTERM in a real worker is resumed from its checkpoint by the next `automl run`,
and ends bit-identical to the same trial run without a stop (issue 14, items 1, 2, 3 and 5).

The worker stops itself at a given step through a tiny plugin trick, so where it stops never depends on the
speed of this machine; the signal is a real one, to a real `automl run` process, on a real study database.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import torch
from optuna.trial import TrialState

from automl.records import (ATTR_CHECKPOINT, ATTR_LOST, ATTR_MODEL, ATTR_RESUME_REFUSED, ATTR_RESUMED,
                                  ATTR_SPENT, ATTR_WEIGHTS)
from automl.study.recovery import INTERRUPTED, WORKER_DIED
from automl.study.resume import mismatch
from tests.conftest import TINY_STUDY, automl_lines
from tests.study.test_fault_signals import ledger_settled

# Each test runs `automl run` two or three times, a few seconds each; the default 300 s is for one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TIMEOUT = 300.0

STOP_AT = '''
"""Stops its own worker (rank STOP_RANK of a trial's ranks, 0 unless set) with the signal STOP_SIGNAL after step
STOP_AT_STEP (when both are set). With STOP_AFTER_SAVED set, it waits first until the checkpoint of that step is
in the SQLite database STOP_DB and the one before it gone from the folder STOP_ARTIFACTS: checkpoints are
written in the background."""
import json
import os
import signal
import sqlite3
import time

from automl import Trick, hookimpl


class StopAt(Trick):
    name = "stop_at"
    state_version = int(os.environ.get("STOP_AT_VERSION", "1"))

    def on_step_end(self, run, loss):
        if os.environ.get("STOP_AT_STEP") == str(run.step) and str(run.rank) == os.environ.get("STOP_RANK", "0"):
            if "STOP_AFTER_SAVED" in os.environ:
                wait_for_checkpoint(os.environ["STOP_DB"], os.environ["STOP_ARTIFACTS"],
                                    int(os.environ["STOP_AFTER_SAVED"]))
            os.kill(os.getpid(), getattr(signal, os.environ["STOP_SIGNAL"]))


def wait_for_checkpoint(db, artifacts, step):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT value_json FROM trial_user_attributes WHERE key = 'checkpoint'").fetchall()
        files = [name for name in os.listdir(artifacts) if name.startswith("checkpoint-")]
        if any(json.loads(value)["step"] == step for (value,) in rows) and len(files) == 1:
            return
        time.sleep(0.05)
    raise RuntimeError(f"the checkpoint of step {step} was not written within 120 s")


@hookimpl
def automl_register_tricks():
    return [StopAt]
'''

EMA_FREEZEOUT = ["ema", "freezeout"]
SNAPSHOTS = ["snapshot_ensemble"]


def study_file(folder: Path, tricks: list[str], every: str) -> Path:
    """A one-trial study of 24 steps with ``tricks`` and stop_at on, in ``folder`` (its artifacts there too)."""
    pinned = "".join(f"[tricks.{name}]\nenabled = true\n" for name in [*tricks, "stop_at"])
    text = TINY_STUDY.format(name="tiny", trial_budget="24steps", n_trials=1,
                             artifacts=(folder / "artifacts").as_posix())
    text = text.replace("seed = 0", f"seed = 0\nheartbeat_interval = 1\ngrace_period = 2\n{every}")
    path = folder / "study.toml"
    path.write_text(text + f'[tricks]\ninclude = {[*tricks, "stop_at"]!r}\n{pinned}'.replace("'", '"'))
    (folder / "stop_at.py").write_text(STOP_AT)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """By trick set: the study file and the trial of the same study run without a stop (each run once)."""
    runs: dict[tuple[str, ...], tuple[Path, optuna.trial.FrozenTrial]] = {}

    def get(tricks: list[str], child_env) -> tuple[Path, optuna.trial.FrozenTrial]:
        if tuple(tricks) not in runs:
            folder = tmp_path_factory.mktemp("reference")
            path, url = study_file(folder, tricks, ""), f"sqlite:///{folder / 'reference.db'}"
            assert automl_run(path, url, child_env).returncode == 0
            (trial,) = trials(url)
            runs[tuple(tricks)] = path, trial
        return runs[tuple(tricks)]

    return get


def automl_run(path: Path, url: str, child_env, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl", "run", str(path), "--storage", url,
                           "--plugin", str(path.parent / "stop_at.py"), *args], cwd=path.parent,
                          env={**child_env(), **env}, capture_output=True, text=True, timeout=TIMEOUT)


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny", storage=url).get_trials(deepcopy=False)


def artifact(path: Path, artifact_id: str) -> Path:
    return path.parent / "artifacts" / artifact_id


def load(path: Path, artifact_id: str) -> dict:
    return torch.load(artifact(path, artifact_id), weights_only=True)


def assert_same_training(reference: tuple[Path, optuna.trial.FrozenTrial], path: Path,
                         b: optuna.trial.FrozenTrial) -> None:
    """The two trials' models and their tricks' weights are bit-identical, and so are their values."""
    where, a = reference
    assert a.value == b.value and a.params == b.params
    for name, x, y in [("model", a.user_attrs[ATTR_MODEL], b.user_attrs[ATTR_MODEL]),
                       *[(n, a.user_attrs[ATTR_WEIGHTS][n], b.user_attrs[ATTR_WEIGHTS][n])
                         for n in a.user_attrs.get(ATTR_WEIGHTS, {})]]:
        x, y = load(where, x)["state_dict"], load(path, y)["state_dict"]
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x), name
    assert a.user_attrs.get(ATTR_WEIGHTS, {}).keys() == b.user_attrs.get(ATTR_WEIGHTS, {}).keys()


def assert_balanced(url: str) -> None:
    """Nothing reserved, the ledger's spent the sum of the cost rows, and each row what its trial says it spent."""
    reserved, unbalanced, rows = ledger_settled(url)
    assert reserved == pytest.approx(0.0, abs=1e-9) and unbalanced == pytest.approx(0.0, abs=1e-6)
    done = [t for t in trials(url) if t.state == TrialState.COMPLETE]
    assert all(rows[t.number].spent_seconds == pytest.approx(t.user_attrs[ATTR_SPENT]) for t in done)


def refused_retry(resumed: subprocess.CompletedProcess, url: str, reason: str) -> optuna.trial.FrozenTrial:
    """The retry of trial 0, checked to have refused its checkpoint for ``reason``, in one line, and completed."""
    assert resumed.returncode == 0, resumed.stderr
    assert automl_lines(resumed.stderr) == [
        f"automl: trial 1 does not resume trial 0's checkpoint: {reason}; it trains from scratch"]
    _, retry = trials(url)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[ATTR_RESUME_REFUSED] == reason
    assert ATTR_RESUMED not in retry.user_attrs
    return retry


def backdate(url: str, seconds: float) -> None:
    """The dead worker's heartbeats ``seconds`` older, as if the next run came that much later."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE automl_trial_cost SET heartbeat_at = datetime(heartbeat_at, :shift)"),
                           {"shift": f"-{seconds} seconds"})
    engine.dispose()


# snapshot_ensemble owns the LR schedule and inference, as ema and freezeout do: no trial has all three on.
@pytest.mark.parametrize("tricks, stop, every, at, saved_at, ended", [
    (EMA_FREEZEOUT, "SIGKILL", "checkpoint_every = 0.25", 14, 12, WORKER_DIED),
    (SNAPSHOTS, "SIGTERM", "", 10, 10, INTERRUPTED),  # no checkpoint_every: SIGTERM alone saves one
])
def test_a_stopped_trial_resumes_from_its_checkpoint_and_ends_bit_identical(
        reference, tmp_path, child_env, tricks, stop, every, at, saved_at, ended):
    path, url = study_file(tmp_path, tricks, every), f"sqlite:///{tmp_path / 'stopped.db'}"

    # SIGKILL gives no time to write: the worker is killed once the checkpoint it saved before is written.
    wait = {"STOP_AFTER_SAVED": str(saved_at), "STOP_DB": str(tmp_path / "stopped.db"),
            "STOP_ARTIFACTS": str(tmp_path / "artifacts")} if stop == "SIGKILL" else {}
    stopped = automl_run(path, url, child_env, STOP_AT_STEP=str(at), STOP_SIGNAL=stop, **wait)
    assert stopped.returncode in (-signal.Signals[stop], 128 + signal.Signals[stop]), stopped.stderr
    (dead,) = trials(url)
    checkpoint = dead.user_attrs[ATTR_CHECKPOINT]
    assert checkpoint["step"] == saved_at and artifact(path, checkpoint["artifact"]).is_file()
    if stop == "SIGKILL":
        backdate(url, 10)  # its heartbeat is older than the grace period: the next run takes it for dead

    resumed = automl_run(path, url, child_env)
    assert resumed.returncode == 0, resumed.stderr
    dead, retry = trials(url)
    assert dead.state == TrialState.FAIL and dead.user_attrs["end_reason"] == ended
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["failed_trial"] == dead.number
    assert retry.user_attrs[ATTR_RESUMED] == {"trial": dead.number, **{k: checkpoint[k] for k in (
        "step", "progress", "spent_seconds")}}
    assert retry.user_attrs[ATTR_LOST] >= 0.0
    assert retry.user_attrs["steps"] == 24
    assert_same_training(reference(tricks, child_env), path, retry)
    # The dead trial's checkpoint lived until its retry ended; then it and the retry's own were removed.
    assert not artifact(path, checkpoint["artifact"]).exists()
    assert not [f for f in (path.parent / "artifacts").iterdir() if f.name.startswith("checkpoint-")]
    assert_balanced(url)


def test_a_checkpoint_of_another_trick_version_is_refused_in_one_line_and_the_trial_starts_over(
        reference, tmp_path, child_env):
    path, url = study_file(tmp_path, SNAPSHOTS, ""), f"sqlite:///{tmp_path / 'stopped.db'}"
    assert automl_run(path, url, child_env, STOP_AT_STEP="10", STOP_SIGNAL="SIGTERM").returncode == 143
    (dead,) = trials(url)

    resumed = automl_run(path, url, child_env, STOP_AT_VERSION="2")
    retry = refused_retry(resumed, url, "trick stop_at has state version 1 in the checkpoint and 2 here")
    assert_same_training(reference(SNAPSHOTS, child_env), path, retry)  # trained from scratch, with the same seed
    assert not artifact(path, dead.user_attrs[ATTR_CHECKPOINT]["artifact"]).exists()
    assert_balanced(url)


@pytest.mark.parametrize("change, reason", [
    ({"seed": 8}, "its seed 7 differ from this trial's 8"),
    ({"params": {"ema.half_life": 0.2}}, "its parameters {'ema.half_life': 0.1} differ"),
    ({"budget": "30steps"}, "its trial budget '24steps' differ"),
    ({"tricks": {"ema": 1, "swa": 1}}, "trick swa has state version none in the checkpoint and 1 here"),
    ({"world_size": 2}, "it was written by 1 rank(s), this trial runs on 2"),
])
def test_a_checkpoint_of_other_params_seed_budget_or_tricks_is_not_resumed(change, reason):
    saved = {"params": {"ema.half_life": 0.1}, "seed": 7, "budget": "24steps", "tricks": {"ema": 1}}
    assert mismatch(saved, saved) is None
    assert reason in mismatch(saved, {**saved, **change})
