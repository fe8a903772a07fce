"""One trial on several devices (issue 14, item 4): two gloo ranks on the CPU through the real CLI, and its bad
inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import torch

from automl.budget import Budget
from automl.cli import main
from automl.storage.ledger import Ledger
from automl.storage.models import TrialCostModel
from automl.storage.schema import ensure_schema
from automl.testing import tiny_data
from automl.train.loader import InMemoryLoader

STEPS = 12
BATCH = 32

# Each rank writes, after every step: the step, the world size, the size and a checksum of the batch it
# trained on, and a checksum of every tensor of its model's state (weights and buffers).
RANK_LOG = '''
import os

from automl import Trick, hookimpl


class RankLog(Trick):
    name = "ranklog"

    def transform_batch(self, run, x, y):
        self.batch = f"{len(x)} {float(x.double().sum())!r}"
        return x, y

    def on_step_end(self, run, loss):
        state = [repr(float(t.double().sum())) for t in run.model.state_dict().values()]
        with open(os.path.join(os.environ["RANKLOG_DIR"], f"rank-{run.rank}.txt"), "a") as f:
            f.write(f"{run.step} {run.world_size} {self.batch} {' '.join(state)}\\n")


@hookimpl
def automl_register_tricks():
    return [RankLog]
'''


def run_two_ranks(tmp_path: Path, study: Path, url: str, env: dict[str, str], plugin_source: str, *argv: str,
                  command: str = "run", expect: int = 0,
                  timeout: float = 900) -> tuple[Path, subprocess.CompletedProcess]:
    """Run ``study`` with two gloo processes per trial through `python -m automl COMMAND` (and ``argv``), with
    ``plugin_source`` as a trick plugin that writes its logs to ``$RANKLOG_DIR``; that folder, and the finished
    process, whose exit code was ``expect``. ``timeout`` is a guard against a hang only."""
    plugin = tmp_path / "ranks_plugin.py"
    plugin.write_text(plugin_source)
    logs = tmp_path / "logs"
    logs.mkdir()
    done = subprocess.run([sys.executable, "-m", "automl", command, str(study), "--storage", url,
                           "--plugin", str(plugin), "--device", "cpu", "--gpus-per-trial", "2", *argv],
                          env={**env, "RANKLOG_DIR": str(logs)}, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == expect, done.stderr
    return logs, done


@pytest.fixture
def two_rank_run(tmp_path, write_study, sqlite_url, child_env):
    """One trial of a tiny study, trained by two gloo processes through `python -m automl run`."""
    study = write_study("""
        [tricks]
        include = ["ranklog"]
        [tricks.ranklog]
        enabled = true
        """, trial_budget=f"{STEPS}steps", n_trials=1)
    logs, _ = run_two_ranks(tmp_path, study, sqlite_url, child_env(), RANK_LOG)
    return sqlite_url, [(logs / f"rank-{r}.txt").read_text().splitlines() for r in (0, 1)]


def test_two_ranks_train_one_trial_with_identical_weights_reported_once_charged_twice(two_rank_run):
    url, (rank0, rank1) = two_rank_run
    assert len(rank0) == len(rank1) == STEPS
    for step, (line0, line1) in enumerate(zip(rank0, rank1), start=1):
        n0, world0, size0, batch0, *state0 = line0.split()
        n1, world1, size1, batch1, *state1 = line1.split()
        assert int(n0) == int(n1) == step and world0 == world1 == "2"
        assert int(size0) == int(size1) == BATCH // 2  # the global batch, split across the ranks
        assert batch0 != batch1  # each rank trains on its own shard
        assert state0 == state1, f"the ranks' weights differ after step {step}"
    assert rank0[0].split()[4:] != rank0[-1].split()[4:]  # and they trained
    # The trial is reported once, by rank 0, and charged twice its wall time.
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE]
    trial = trials[0]
    assert len(trial.values) == 1 and sorted(trial.intermediate_values) == [0, 1]  # each rung once
    assert trial.user_attrs["steps"] == STEPS
    wall = trial.user_attrs["train_seconds"] + trial.user_attrs["eval_seconds"]
    with sa.create_engine(url).connect() as connection:
        rows = connection.execute(sa.select(TrialCostModel)).all()
    assert [r.trial_number for r in rows] == [0]
    assert rows[0].spent_seconds == pytest.approx(2 * wall, rel=1e-9)
    assert trial.user_attrs["spent_seconds"] == pytest.approx(rows[0].spent_seconds, rel=1e-9)


def test_each_rank_sees_its_part_of_the_global_batch_in_the_same_order():
    data = tiny_data()
    whole = InMemoryLoader(data.train, BATCH, seed=3)
    parts = [InMemoryLoader(data.train, BATCH, seed=3) for _ in range(2)]
    for rank, loader in enumerate(parts):
        loader.shard(rank, 2)
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_each_rank_augments_its_part_with_draws_of_its_own():
    data = tiny_data()
    parts = [InMemoryLoader(data.train, BATCH, seed=3, augment=True) for _ in range(2)]
    plain = [InMemoryLoader(data.train, BATCH, seed=3) for _ in range(2)]
    for rank, loader in enumerate(parts + plain):
        loader.shard(rank % 2, 2)
    x0, x1 = (next(iter(loader))[0] for loader in parts)
    p0, p1 = (next(iter(loader))[0] for loader in plain)
    # The same crop and flip on both ranks would leave the two parts' differences unchanged by augmentation.
    assert not torch.equal(x0 - x1, p0 - p1)


def test_a_trial_budget_of_device_time_is_reserved_on_each_of_its_devices(sqlite_url):
    ensure_schema(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    one, two = Ledger(engine, "s"), Ledger(engine, "s", devices=2)
    one.open(None)
    assert one.estimate(Budget(30, "seconds")) == 30
    assert two.estimate(Budget(30, "seconds")) == 60


def refused(capsys, db: Path, *argv: str) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.startswith("automl: error: ") and err.count("\n") == 1, err
    assert not db.exists()
    return err


@pytest.fixture
def tiny(write_study, tmp_path):
    return write_study(), tmp_path / "studies.db"


COMMANDS = pytest.mark.parametrize("command", ["run", "compare"])


@COMMANDS
def test_fewer_than_one_device_per_trial_is_refused(capsys, tiny, sqlite_url, command):
    study, db = tiny
    assert "--gpus-per-trial must be at least 1, got 0" in refused(
        capsys, db, command, study, "--storage", sqlite_url, "--device", "cpu", "--gpus-per-trial", "0")
    study.write_text(study.read_text().replace("[study]\n", "[study]\ngpus_per_trial = 0\n"))
    assert "gpus_per_trial" in refused(capsys, db, command, study, "--storage", sqlite_url, "--device", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: auto is the GPU")
@COMMANDS
def test_several_devices_per_trial_without_a_gpu_ask_for_the_cpu_by_name(capsys, tiny, sqlite_url, command):
    study, db = tiny
    assert "give --device cpu" in refused(capsys, db, command, study, "--storage", sqlite_url, "--gpus-per-trial",
                                          "2")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_more_devices_per_trial_than_visible_gpus_are_refused(capsys, tiny, sqlite_url):
    study, db = tiny
    k = torch.cuda.device_count() + 1
    assert f"{torch.cuda.device_count()} are visible" in refused(
        capsys, db, "run", study, "--storage", sqlite_url, "--gpus-per-trial", str(k))
    assert "CUDA_VISIBLE_DEVICES" in refused(capsys, db, "run", study, "--storage", sqlite_url, "--device", "cuda:0",
                                             "--gpus-per-trial", "2")


@COMMANDS
def test_a_count_other_than_torchruns_is_refused(capsys, tiny, sqlite_url, monkeypatch, command):
    study, db = tiny
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert "torchrun --nproc-per-node 2" in refused(capsys, db, command, study, "--storage", sqlite_url,
                                                     "--device", "cpu", "--gpus-per-trial", "2")


def test_devices_per_trial_leave_the_trials_config_digest_as_it_was(write_study):
    from automl.study.config import config_digest, load_study_file

    one = load_study_file(str(write_study()), None).config
    path = write_study(filename="two.toml")
    path.write_text(path.read_text().replace("[study]\n", "[study]\ngpus_per_trial = 2\n"))
    two = load_study_file(str(path), None).config
    assert two.study.gpus_per_trial == 2
    assert config_digest(one) == config_digest(two)



# What each rank's trial ran with: the attributes its tricks set up (each trick names its own), at the end.
ATTRS_LOG = '''
import json
import os

from automl import Trick, hookimpl


class AttrsLog(Trick):
    name = "attrslog"
    order = 1 << 30

    def on_end(self, run):
        with open(os.path.join(os.environ["RANKLOG_DIR"], f"attrs-{run.rank}.txt"), "a") as f:
            f.write(json.dumps(sorted(run.attrs)) + "\\n")


@hookimpl
def automl_register_tricks():
    return [AttrsLog]
'''


@pytest.mark.slow
def test_the_other_ranks_take_rank_0s_word_for_which_tricks_are_unavailable(tmp_path, write_study, sqlite_url,
                                                                             child_env):
    # zero_gamma is unavailable for small_cnn, which rank 1 cannot know without the model; distillation is
    # unavailable until a trial has completed, which only rank 0 asks the study about. Rank 1 once crashed on
    # the first and trained without the second.
    study = write_study("""
        [tricks]
        include = ["attrslog", "zero_gamma", "distillation"]
        [tricks.attrslog]
        enabled = true
        [tricks.zero_gamma]
        enabled = true
        [tricks.distillation]
        enabled = true
        """, n_trials=2)
    logs, _ = run_two_ranks(tmp_path, study, sqlite_url, child_env(), ATTRS_LOG)
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    assert [sorted(t.user_attrs["unavailable"]) for t in trials] == [["distillation", "zero_gamma"], ["zero_gamma"]]
    assert [t.user_attrs["tricks"] for t in trials] == [["attrslog"], ["distillation", "attrslog"]]
    rank0, rank1 = ((logs / f"attrs-{r}.txt").read_text().splitlines() for r in (0, 1))
    assert rank0 == rank1 and len(rank0) == 2
    assert "distillation.teacher" in rank1[1] and not any("zero_gamma" in line for line in rank1)


# The ranks automl starts fail to start, in rank 1 alone: a model that cannot be built there, a plugin that
# cannot be loaded there.
RANK_1_MODEL = '''
import os

from torch import nn


def build(num_classes, in_channels, **model_args):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("this model cannot be built in rank 1")
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 8 * 8, num_classes))
'''

RANK_1_PLUGIN = '''
import os

from automl import Trick, hookimpl

if os.environ.get("RANK") == "1":
    raise RuntimeError("this plugin does not load in rank 1")


class Loaded(Trick):
    name = "loaded"


@hookimpl
def automl_register_tricks():
    return [Loaded]
'''


def _two_ranks_refused(study: Path, url: str, env: dict[str, str], *argv: str) -> list[str]:
    # Far below the rendezvous' timeout (RENDEZVOUS_TIMEOUT, 5 min), which is how long rank 0 used to wait.
    done = subprocess.run([sys.executable, "-m", "automl", "run", str(study), "--storage", url, *argv,
                           "--device", "cpu", "--gpus-per-trial", "2"],
                          env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert not (study.parent / "studies.db").exists() or optuna.get_all_study_names(url) == []
    return done.stderr.splitlines()


@pytest.mark.slow
def test_a_rank_that_fails_to_start_stops_rank_0_at_once_with_one_line(write_study, tmp_path, sqlite_url, child_env):
    (tmp_path / "rank_model.py").write_text(RANK_1_MODEL)
    study = write_study()
    study.write_text(study.read_text().replace('model = "small_cnn"', 'model = "rank_model:build"'))
    lines = _two_ranks_refused(study, sqlite_url, child_env())
    assert any("this model cannot be built in rank 1" in line for line in lines)  # rank 1's own line, above
    assert lines[-1] == ("automl: error: rank 1 of --gpus-per-trial 2 exited with code 2 before the trial's ranks "
                         "met (its own message is above); nothing was written to the study")


@pytest.mark.slow
def test_a_rank_with_other_plugins_than_rank_0_is_refused_before_a_trial(write_study, tmp_path, sqlite_url,
                                                                         child_env):
    plugin = tmp_path / "rank_plugin.py"
    plugin.write_text(RANK_1_PLUGIN)
    lines = _two_ranks_refused(write_study(), sqlite_url, child_env(), "--plugin", str(plugin))
    assert any("this plugin does not load in rank 1" in line for line in lines)  # its warning, in rank 1
    assert lines[-1].startswith("automl: error: rank 1 of --gpus-per-trial 2 has 'loaded' from nowhere, but rank 0 "
                                "has it from ")
    assert lines[-1].endswith(": every rank must load the same plugins (see the warnings above); nothing was "
                              "written to the study")


# A trick that fails on one rank only (issue 25, item 10): trial 0 on rank 1 mid-step, trial 1 on rank 0 mid-step,
# trial 2 on rank 1 after its last collective (its on_trial_end); trial 3 trains on both ranks as if nothing had
# happened. Each rank logs every step it finished, with a checksum of its weights.
ONE_RANK_FAILS = '''
import os

from automl import Trick, hookimpl

FAILS = {0: (1, "on_step_start"), 1: (0, "on_step_start"), 2: (1, "on_trial_end")}


class OneRankFails(Trick):
    name = "onerankfails"

    def on_step_start(self, run):
        if FAILS.get(run.context.trial_number) == (run.rank, "on_step_start") and run.step == 3:
            raise ValueError(f"only on rank {run.rank}")

    def on_step_end(self, run, loss):
        state = repr(sum(float(t.double().sum()) for t in run.model.state_dict().values()))
        with open(os.path.join(os.environ["RANKLOG_DIR"], f"rank-{run.rank}.txt"), "a") as f:
            f.write(f"{run.context.trial_number} {run.step} {state}\\n")

    def on_trial_end(self, run, ended):
        if FAILS.get(run.context.trial_number) == (run.rank, "on_trial_end"):
            raise ValueError(f"only on rank {run.rank}, at the end")


@hookimpl
def automl_register_tricks():
    return [OneRankFails]
'''


@pytest.mark.slow
def test_a_trick_error_on_one_rank_fails_that_trial_on_every_rank_and_the_run_goes_on(tmp_path, write_study,
                                                                                       sqlite_url, child_env):
    study = write_study("""
        [tricks]
        include = ["onerankfails"]
        [tricks.onerankfails]
        enabled = true
        """, trial_budget=f"{STEPS}steps", n_trials=4)
    logs, done = run_two_ranks(tmp_path, study, sqlite_url, child_env(), ONE_RANK_FAILS,
                               timeout=300)  # seconds of training
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    states = [t.state.name for t in trials]
    assert states == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"], done.stderr
    # Rank 0 records the failure where it happened, in the trick's own words.
    assert trials[0].user_attrs["end_reason"] == "trick_error"
    assert trials[0].user_attrs["end_detail"] == ("on rank 1 of 2: onerankfails.on_step_start at step 3: "
                                                  "ValueError: only on rank 1")
    assert trials[1].user_attrs["end_detail"] == "onerankfails.on_step_start at step 3: ValueError: only on rank 0"
    # A failure after the trial's last collective leaves rank 0's complete trial as it was, and says so.
    assert any("the last trial failed on rank 1 of 2 after its last step with rank 0: onerankfails.on_trial_end "
               "at step 12: ValueError: only on rank 1, at the end; it stays as rank 0 recorded it" in line
               for line in done.stderr.splitlines()), done.stderr
    # The ranks trained the next trials together, step for step, with the same weights.
    rank0, rank1 = ((logs / f"rank-{r}.txt").read_text().splitlines() for r in (0, 1))
    after = [line for line in rank0 if line.split()[0] in ("2", "3")]
    assert len(after) == 2 * STEPS and after == [line for line in rank1 if line.split()[0] in ("2", "3")]
    # Failed trials were charged what they spent on both devices; nothing was left running.
    with sa.create_engine(sqlite_url).connect() as connection:
        rows = connection.execute(sa.select(TrialCostModel)).all()
    assert sorted(r.trial_number for r in rows) == [0, 1, 2, 3] and all(r.spent_seconds > 0 for r in rows)


CELL_LOG = '''
import os

from automl import Trick, hookimpl


class CellLog(Trick):
    name = "celllog"

    def on_step_end(self, run, loss):
        state = repr(sum(float(t.double().sum()) for t in run.model.state_dict().values()))
        with open(os.path.join(os.environ["RANKLOG_DIR"], f"rank-{run.rank}.txt"), "a") as f:
            f.write(f"{run.context.study_name} {run.context.trial_number} {run.step} {run.world_size} {state}\\n")


@hookimpl
def automl_register_tricks():
    return [CellLog]
'''


@pytest.mark.slow
def test_compare_trains_each_cell_on_several_ranks_at_its_own_budget(tmp_path, write_study, sqlite_url, child_env):
    # Issue 25, item 10: `automl compare` had no --gpus-per-trial, and the ranks automl starts ran `automl run`,
    # which trains the study file's budget, not the cell's.
    study = write_study("""
        [tricks]
        include = ["cosine", "celllog"]
        [tricks.cosine]
        final = 0.0
        [tricks.celllog]
        enabled = true
        """)
    logs, done = run_two_ranks(tmp_path, study, sqlite_url, child_env(), CELL_LOG, "--seeds", "3",
                               "--budgets", "4steps,8steps", "--json", command="compare", timeout=600)
    result = json.loads(done.stdout)
    assert [b["budget"] for b in result["budgets"]] == ["4steps", "8steps"]
    for budget, steps in (("4steps", 4), ("8steps", 8)):
        cells = optuna.load_study(study_name=f"tiny-compare-{budget}", storage=sqlite_url).get_trials()
        assert [t.state.name for t in cells] == ["COMPLETE"] * 6
        assert all(t.user_attrs["steps"] == steps for t in cells)
    rank0, rank1 = ((logs / f"rank-{r}.txt").read_text().splitlines() for r in (0, 1))
    # Both ranks trained every cell together, each at its own budget, holding the same weights at every step.
    assert rank0 == rank1 and len(rank0) == 6 * 4 + 6 * 8
    assert {line.split()[3] for line in rank0} == {"2"}


RANK_1_DIES = '''
import os
import signal

from automl import Trick, hookimpl


class RankOneDies(Trick):
    name = "rankonedies"

    def on_step_start(self, run):
        if run.rank == 1 and run.step == 3:
            os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def automl_register_tricks():
    return [RankOneDies]
'''


@pytest.mark.slow
def test_a_rank_that_dies_mid_trial_stops_rank_0_at_once_with_one_line(tmp_path, write_study, sqlite_url, child_env):
    study = write_study("""
        [tricks]
        include = ["rankonedies"]
        [tricks.rankonedies]
        enabled = true
        """, trial_budget=f"{STEPS}steps", n_trials=2)
    _, done = run_two_ranks(tmp_path, study, sqlite_url, child_env(), RANK_1_DIES, expect=1,
                            timeout=150)  # far below the rendezvous' 5 min
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1].startswith("automl: error: a rank of --gpus-per-trial 2 left the trial "
                                                   "without saying why (it died"), done.stderr
    (trial,) = optuna.load_study(study_name="tiny", storage=sqlite_url).get_trials()
    assert trial.state.name == "FAIL" and "left the trial without saying why" in trial.user_attrs["end_detail"]
