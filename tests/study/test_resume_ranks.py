"""A trial on two gloo ranks checkpoints and resumes as one on one rank does (issue 14, items 1, 2 and 4): killed
after a checkpoint, its retry goes on from it on both ranks and ends bit-identical to the same two-rank trial run
without a stop; a checkpoint written by another number of ranks is refused in one line."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from automl.records import ATTR_CHECKPOINT, ATTR_LOST, ATTR_RESUMED
from automl.study.recovery import INTERRUPTED, WORKER_DIED
from tests.study.test_resume import (artifact, assert_balanced, assert_same_training, automl_run, backdate, load,
                                     refused_retry, study_file, trials)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
TWO_RANKS = ("--device", "cpu", "--gpus-per-trial", "2")
TRICKS = ["ema", "rank_noise"]
EVERY = "checkpoint_every = 0.25"

# Draws from torch's global generator as many times as its rank's number, and keeps a count of its own: the
# ranks' generators and this trick's state part ways, and each rank's shapes its batches (so its gradients).
RANK_NOISE = '''
import torch

from automl import Trick, hookimpl


class RankNoise(Trick):
    name = "rank_noise"

    def setup(self, run):
        self.drawn = 0

    def transform_batch(self, run, x, y):
        noise = torch.rand(run.rank + 1)
        self.drawn += run.rank + 1
        return x + 0.01 * float(noise[-1]) * (self.drawn % 5), y

    def state_dict(self, run):
        return {"drawn": self.drawn}

    def load_state_dict(self, run, state):
        self.drawn = state["drawn"]


@hookimpl
def automl_register_tricks():
    return [RankNoise]
'''


def two_rank_study(folder: Path) -> Path:
    path = study_file(folder, TRICKS, EVERY)
    (folder / "rank_noise.py").write_text(RANK_NOISE)
    return path


def plugin(path: Path) -> tuple[str, str]:
    return "--plugin", str(path.parent / "rank_noise.py")


@pytest.fixture(scope="module")
def two_rank_reference(tmp_path_factory):
    """The study file and the trial of the two-rank study run without a stop (run once)."""
    runs = []

    def get(child_env):
        if not runs:
            folder = tmp_path_factory.mktemp("reference")
            path, url = two_rank_study(folder), f"sqlite:///{folder / 'reference.db'}"
            done = automl_run(path, url, child_env, *TWO_RANKS, *plugin(path))
            assert done.returncode == 0, done.stderr
            (trial,) = trials(url)
            runs.append((path, trial))
        return runs[0]

    return get


def killed_after_checkpoint(tmp_path, child_env, *args: str):
    """The study run until its rank 0 is killed with SIGKILL at step 14, the checkpoint of step 12 written."""
    path, url = two_rank_study(tmp_path), f"sqlite:///{tmp_path / 'stopped.db'}"
    stopped = automl_run(path, url, child_env, *args, *plugin(path), STOP_AT_STEP="14", STOP_SIGNAL="SIGKILL",
                         STOP_AFTER_SAVED="12", STOP_DB=str(tmp_path / "stopped.db"),
                         STOP_ARTIFACTS=str(tmp_path / "artifacts"))
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr
    (dead,) = trials(url)
    checkpoint = dead.user_attrs[ATTR_CHECKPOINT]
    assert checkpoint["step"] == 12 and artifact(path, checkpoint["artifact"]).is_file()
    backdate(url, 10)  # its heartbeat is older than the grace period: the next run takes it for dead
    return path, url, checkpoint


def test_a_killed_two_rank_trial_resumes_on_both_ranks_and_ends_bit_identical(
        two_rank_reference, tmp_path, child_env):
    path, url, checkpoint = killed_after_checkpoint(tmp_path, child_env, *TWO_RANKS)
    tree = load(path, checkpoint["artifact"])["tree"]
    assert tree["identity"]["world_size"] == 2
    # Rank 1's own generators, and of the tricks' states only the one that differs from rank 0's.
    (rank1,) = tree["ranks"]
    assert rank1["augment"] is not None and rank1["tricks"] == {"rank_noise": {"drawn": 2 * 12}}
    assert tree["tricks"]["rank_noise"] == {"drawn": 12}

    resumed = automl_run(path, url, child_env, *TWO_RANKS, *plugin(path))
    assert resumed.returncode == 0, resumed.stderr
    dead, retry = trials(url)
    assert dead.state == TrialState.FAIL and dead.user_attrs["end_reason"] == WORKER_DIED
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["steps"] == 24
    assert retry.user_attrs[ATTR_RESUMED] == {"trial": dead.number, **{k: checkpoint[k] for k in (
        "step", "progress", "spent_seconds")}}
    assert retry.user_attrs[ATTR_LOST] >= 0.0
    assert_same_training(two_rank_reference(child_env), path, retry)
    assert not [f for f in (path.parent / "artifacts").iterdir() if f.name.startswith("checkpoint-")]
    assert_balanced(url)


def test_a_one_rank_checkpoint_is_refused_by_a_two_rank_retry_which_trains_from_scratch(
        two_rank_reference, tmp_path, child_env):
    path, url, checkpoint = killed_after_checkpoint(tmp_path, child_env)

    resumed = automl_run(path, url, child_env, *TWO_RANKS, *plugin(path))
    retry = refused_retry(resumed, url, "it was written by 1 rank(s), this trial runs on 2")
    assert_same_training(two_rank_reference(child_env), path, retry)  # from scratch on two ranks, with the same seed
    assert not artifact(path, checkpoint["artifact"]).exists()
    assert_balanced(url)


def test_a_two_rank_trial_stopped_by_sigterm_saves_on_both_ranks_and_its_retry_ends_bit_identical(
        two_rank_reference, tmp_path, child_env):
    # The signal reaches rank 0 alone, as it does the `automl run` a scheduler stops.
    path, url = two_rank_study(tmp_path), f"sqlite:///{tmp_path / 'stopped.db'}"
    stopped = automl_run(path, url, child_env, *TWO_RANKS, *plugin(path), STOP_AT_STEP="10", STOP_SIGNAL="SIGTERM")
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    (dead,) = trials(url)
    checkpoint = dead.user_attrs[ATTR_CHECKPOINT]
    assert checkpoint["step"] == 10  # saved at the stop, not at the last checkpoint_every (step 6)
    assert load(path, checkpoint["artifact"])["tree"]["ranks"][0]["tricks"] == {"rank_noise": {"drawn": 20}}

    resumed = automl_run(path, url, child_env, *TWO_RANKS, *plugin(path))
    assert resumed.returncode == 0, resumed.stderr
    dead, retry = trials(url)
    assert dead.user_attrs["end_reason"] == INTERRUPTED and retry.user_attrs[ATTR_RESUMED]["step"] == 10
    assert_same_training(two_rank_reference(child_env), path, retry)
    assert not [f for f in (path.parent / "artifacts").iterdir() if f.name.startswith("checkpoint-")]
    assert_balanced(url)
