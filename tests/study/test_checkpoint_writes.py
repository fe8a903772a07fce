"""A trial's checkpoints are written in the background: what is written is the state at its save, one write at a
time, the one it replaces removed after it, and a write that fails (a full disk) stops the trial's checkpoints
with one warning, nothing half-written left (issues 14 and 25).

Real parts: a SQLite Optuna study, a file-system artifact store, ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import builtins
import errno
import shutil
import threading

import optuna
import pytest
import torch

from automl.storage.artifacts import artifact_store
from automl.storage.optuna_adapter import frozen_trial, set_user_attrs
from automl.records import ATTR_CHECKPOINT, ATTR_CHECKPOINT_FAILED, ATTR_RESUME_REFUSED, SYS_RETRY_OF
from automl.study.resume import TrialCheckpoints
from automl.train.checkpoints import TENSOR, packed, unpacked


def state(step: int, weight: torch.Tensor) -> dict:
    """The parts of a checkpoint ``TrialCheckpoints`` reads, around a live tensor."""
    return {"run": {"step": step}, "loop": {"p": step / 10, "spent_seconds": float(step), "resumed_seconds": 0.0},
            "model": {"weight": weight}}


@pytest.fixture()
def checkpoints(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    saving = TrialCheckpoints(study.ask(), artifact_store(tmp_path / "artifacts"))
    yield saving
    if saving._writer is not None:
        saving._writer.shutdown()


def named(saving: TrialCheckpoints) -> dict:
    return frozen_trial(saving.trial.study, saving.trial.number).user_attrs[ATTR_CHECKPOINT]


def checkpoint_files(tmp_path) -> list[str]:
    return sorted(f.name for f in (tmp_path / "artifacts").iterdir())


def test_a_checkpoint_holds_the_state_of_its_save_though_training_changed_it_while_it_was_written(
        checkpoints, tmp_path):
    weight = torch.zeros(1000)
    checkpoints.save(state(3, weight))
    weight += 1  # the next step, before (or while) the write runs
    checkpoints.flush()
    found = named(checkpoints)
    assert found["step"] == 3 and found["spent_seconds"] == 3.0
    written = unpacked(torch.load(tmp_path / "artifacts" / found["artifact"], weights_only=True))
    assert torch.equal(written["model"]["weight"], torch.zeros(1000))


def test_each_write_replaces_the_last_and_the_trials_end_removes_the_latest(checkpoints, tmp_path):
    weight = torch.zeros(10)
    checkpoints.save(state(1, weight))
    checkpoints.save(state(2, weight))  # waits for the first write, then writes in the background
    checkpoints.flush()
    assert named(checkpoints)["step"] == 2
    assert checkpoint_files(tmp_path) == [named(checkpoints)["artifact"]]
    checkpoints.end()
    assert checkpoint_files(tmp_path) == []


def test_the_write_runs_off_the_training_thread(checkpoints, monkeypatch):
    threads = []
    write = checkpoints._write
    monkeypatch.setattr(checkpoints, "_write", lambda s: (threads.append(threading.current_thread()), write(s)))
    checkpoints.save(state(1, torch.zeros(10)))
    checkpoints.flush()
    assert threads and threads[0] is not threading.current_thread()


def test_a_write_that_fails_stops_the_checkpoints_with_one_line_and_leaves_the_checkpoint_before_it(
        checkpoints, tmp_path, capsys):
    weight = torch.zeros(10)
    checkpoints.save(state(1, weight))
    checkpoints.flush()
    kept = named(checkpoints)
    shutil.rmtree(tmp_path / "artifacts")
    (tmp_path / "artifacts").write_text("a file where the store's folder was")
    checkpoints.save(state(2, weight))
    checkpoints.save(state(3, weight))  # meets the failed write: warns once, and writes no more
    checkpoints.save(state(4, weight))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("automl: warning: trial 0: a checkpoint could not be written to")
    assert "it goes on without checkpoints" in err and checkpoints.stopped
    assert checkpoints.attrs[ATTR_CHECKPOINT_FAILED].startswith("a checkpoint could not be written")
    # The trial still names the checkpoint written before the failure, and nothing half-written is named.
    assert named(checkpoints) == kept
    assert checkpoints.latest == kept["artifact"]


def test_a_full_disk_leaves_nothing_half_written_and_says_the_folder_and_the_space(checkpoints, tmp_path, capsys):
    real_open = builtins.open

    class FullDisk:
        """The store's file, as on a full disk: part of the bytes land, then ENOSPC."""

        def __init__(self, path, mode="wb"):
            self.file = real_open(path, mode)

        def write(self, data):
            self.file.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    checkpoints.save(state(1, torch.zeros(10)))
    checkpoints.flush()
    kept = named(checkpoints)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", lambda path, mode="r", *a, **k: FullDisk(path, mode)
                      if "artifacts" in str(path) and "w" in mode else real_open(path, mode, *a, **k))
        checkpoints.save(state(2, torch.zeros(100_000)))
        checkpoints.flush()
    err = capsys.readouterr().err
    assert f"could not be written to {tmp_path / 'artifacts'} (No space left on device; it needs 0.4 MB free)" in err
    assert "set [study] artifacts to another folder" in err and err.count("\n") == 1
    assert checkpoint_files(tmp_path) == [kept["artifact"]]  # the half-written file is gone
    assert named(checkpoints) == kept


def test_a_packed_state_comes_back_whole_each_tensor_with_its_dtype_shape_and_values():
    state = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": [torch.tensor(7), (torch.ones(0),)],
             "c": {"d": torch.tensor([True, False]), "e": torch.arange(4, dtype=torch.int64)[::2]}, "f": 1.5}
    written = packed(state)
    assert sorted(written["buffers"]) == ["bool/cpu", "float32/cpu", "int64/cpu"]  # one tensor a dtype
    back = unpacked(written)
    assert back["f"] == 1.5 and isinstance(back["b"], list) and isinstance(back["b"][1], tuple)
    for x, y in [(state["a"], back["a"]), (state["b"][0], back["b"][0]), (state["b"][1][0], back["b"][1][0]),
                 (state["c"]["d"], back["c"]["d"]), (state["c"]["e"], back["c"]["e"])]:
        assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
    back["a"] += 1  # a copy of its own: neither the buffer nor the others change
    assert torch.equal(unpacked(written)["a"], state["a"])


def test_a_state_that_uses_the_placeholder_key_is_refused():
    with pytest.raises(ValueError, match=TENSOR):
        packed({"trick": {TENSOR: 1}})


@pytest.mark.parametrize("content, reason, kept", [
    ({"format": 1, "model": {}}, "it has format 1, this automl reads 2", False),  # another form: removed with the retry
    ("not a checkpoint", "it could not be read", True),  # unreadable: left where it is
    (bytes(range(256)) * 8, "it could not be read", True),  # random bytes: torch's unpickler refuses them
])
def test_a_checkpoint_of_another_form_or_unreadable_is_refused_in_one_line(tmp_path, capsys, content, reason, kept):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    store = artifact_store(tmp_path / "artifacts")
    dead = study.ask()
    path = tmp_path / "artifacts" / "checkpoint-old"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    set_user_attrs(study, dead, {ATTR_CHECKPOINT: {"artifact": "checkpoint-old", "step": 3, "progress": 0.3,
                                                   "spent_seconds": 3.0}})
    study.tell(dead, state=optuna.trial.TrialState.FAIL)
    retry = study.ask()
    study._storage.set_trial_system_attr(retry._trial_id, SYS_RETRY_OF, dead.number)
    saving = TrialCheckpoints(retry, store)
    assert saving.checkpointing(None, {}).resume is None
    err = capsys.readouterr().err
    assert err.startswith(f"automl: trial 1 does not resume trial 0's checkpoint: {reason}")
    # One line, in automl's words: never torch's advice to load with weights_only=False, unsafe on a file not ours.
    assert err.count("\n") == 1 and "weights_only" not in err and len(err) < 300, err
    assert saving.attrs[ATTR_RESUME_REFUSED].startswith(reason)
    saving.end()
    assert path.exists() == kept
