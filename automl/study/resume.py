"""Where a trial's checkpoints live in the artifact store, and how a retried trial finds the one to resume.

A trial keeps only its latest checkpoint, named in its ``checkpoint`` attribute; it is removed when the
trial ends, except when a stop signal or its worker's death ends it: then its retry (same parameters,
same seed, see ``automl.study.recovery``) resumes from it, names it as its own until it saves a newer
one, and removes it when it has. A checkpoint that does not match the retry (another trick version,
other parameters or seed, another number of ranks) is not resumed: the retry says why, in one line, and
trains from scratch.

A trial on several devices checkpoints as one: rank 0 alone talks to the study and the store; at each save the
other ranks hand it their own parts (``automl.train.checkpoints.with_ranks``), and on a retry it decides whether
to resume and sends the checkpoint to them (:func:`shared_resume`), so no rank needs to read the store.

A checkpoint is copied to the CPU at its stop point and written by a thread of its own while the run goes on,
one at a time; one saved at a stop signal is written before the worker exits.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from automl.storage.ledger import Ledger
from automl.storage.optuna_adapter import frozen_trial, set_user_attrs, study_engine, trial_id
from automl.records import (ATTR_BUDGET, ATTR_CHECKPOINT, ATTR_CHECKPOINT_FAILED, ATTR_LOST, ATTR_RESUME_REFUSED,
                            ATTR_RESUMED, SYS_RETRY_OF)
from automl.train.checkpoints import FORMAT, Checkpointing, Every, packed, unpacked
from automl.train.distributed import TrialGroup
from automl.trick import Trick


def identity(trial: optuna.Trial, tricks: list[Trick], seed: int, attrs: dict[str, Any],
             world_size: int = 1) -> dict[str, Any]:
    """What a checkpoint must share with the trial that resumes it: parameters, seed, budget, tricks' versions,
    and the number of ranks (each has a part of its own in the checkpoint)."""
    return {"params": dict(trial.params), "seed": seed, "budget": attrs[ATTR_BUDGET],
            "tricks": {t.name: type(t).state_version for t in tricks}, "world_size": world_size}


def mismatch(saved: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """Why a checkpoint whose identity is ``saved`` cannot be resumed by a trial of ``expected``, or None."""
    ours, theirs = expected.get("world_size", 1), saved.get("world_size", 1)  # none before there were ranks: one
    if ours != theirs:
        return f"it was written by {theirs} rank(s), this trial runs on {ours}"
    if saved.get("tricks") != expected["tricks"]:
        ours, theirs = expected["tricks"], saved.get("tricks", {})
        changed = sorted(n for n in ours.keys() | theirs.keys() if ours.get(n) != theirs.get(n))
        return "; ".join(f"trick {n} has state version {theirs.get(n, 'none')} in the checkpoint and "
                         f"{ours.get(n, 'none')} here" for n in changed)
    for key, what in (("seed", "seed"), ("params", "parameters"), ("budget", "trial budget")):
        if saved.get(key) != expected[key]:
            return f"its {what} {saved.get(key)!r} differ from this trial's {expected[key]!r}"
    return None


class CheckpointNotWritten(OSError):
    """A trial's checkpoint could not be written (a full disk, a folder that went away); the message says where,
    how much, and the fix."""


class TrialCheckpoints:
    """The checkpoints of one running trial, in the study's artifact store."""

    def __init__(self, trial: optuna.Trial, store: FileSystemArtifactStore) -> None:
        self.trial, self.store = trial, store
        self.latest: str | None = None
        """The artifact of this trial's own latest checkpoint."""
        self.inherited: str | None = None
        """The artifact of the checkpoint this trial resumed from (the trial it re-runs wrote it)."""
        self.attrs: dict[str, Any] = {}
        """What the trial records about its resume."""
        self.uncharged = 0.0
        """Seconds the resumed checkpoint had spent beyond what the dead trial's cost row charged (its last
        heartbeat came before the checkpoint): charged to this trial, so the study pays for them once."""
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None
        self.stopped = False
        """A write failed (a full disk, a folder gone): the trial goes on without checkpoints."""

    def checkpointing(self, every: Every | None, expected: dict[str, Any],
                      group: TrialGroup | None = None) -> Checkpointing:
        """How the trial saves itself, resuming from the checkpoint of the trial it re-runs when it matches;
        with ``group`` (this is its rank 0), the other ranks resume from it too (:func:`follower_checkpointing`)."""
        resume = self._resume(expected)
        if group is not None:
            resume = shared_resume(group, resume)
        return Checkpointing(save=self.save, flush=self.flush, every=every, resume=resume, identity=expected,
                             group=group)

    def save(self, state: dict[str, Any]) -> None:
        """Take ``state`` as the trial's latest checkpoint: copied now, written in the background while the run
        goes on. One is written at a time: a save waits for the write before it, and raises that one's error."""
        if self.stopped:
            return
        staged = packed(state)
        self.flush()
        if self.stopped:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"checkpoints-{self.trial.number}")
        self._writing = self._writer.submit(self._write, staged)

    def flush(self) -> None:
        """Wait until the checkpoint being written is; its write's error, if any, is raised here."""
        writing, self._writing = self._writing, None
        if writing is None:
            return
        try:
            writing.result()
        except CheckpointNotWritten as exc:
            self.stopped = True
            self.attrs[ATTR_CHECKPOINT_FAILED] = str(exc)
            print(f"automl: warning: trial {self.trial.number}: {exc}; it goes on without checkpoints (a crash now "
                  "restarts it from the start)", file=sys.stderr)

    def end(self) -> None:
        """The trial has ended and will not be retried: its checkpoints go, the one being written too."""
        try:
            self.flush()
        finally:
            self._remove(self.latest, self.inherited)
            self.latest = self.inherited = None
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None

    def _write(self, written: dict[str, Any]) -> None:
        """Write ``written`` (a :func:`~automl.train.checkpoints.packed` state) as the trial's latest checkpoint,
        then remove the one it replaces: a worker that dies in between leaves one checkpoint too many, never none."""
        artifact = f"checkpoint-{uuid.uuid4().hex}"
        buffer = io.BytesIO()
        torch.save(written, buffer)
        size = buffer.tell()
        buffer.seek(0)
        try:
            self.store.write(artifact, buffer)
        except OSError as exc:
            with contextlib.suppress(OSError):  # nothing half-written is left, nor named
                remove_artifact(self.store, artifact)
            folder = getattr(self.store, "_base_path", "the artifacts folder")
            raise CheckpointNotWritten(f"a checkpoint could not be written to {folder} ({exc.strerror or exc}; it "
                                       f"needs {size / 1e6:.1f} MB free); free space there or set [study] "
                                       "artifacts to another folder") from exc
        state = written["tree"]  # its numbers are plain data, its tensors placeholders
        saved = state["loop"]
        own = saved["spent_seconds"] - saved["resumed_seconds"]
        try:
            set_user_attrs(self.trial.study, self.trial, {ATTR_CHECKPOINT: {
                "artifact": artifact, "step": state["run"]["step"], "progress": saved["p"], "spent_seconds": own}})
        except BaseException:
            remove_artifact(self.store, artifact)  # named by no trial: of use to none
            raise
        self._remove(self.latest, self.inherited)
        self.latest, self.inherited = artifact, None

    def _remove(self, *artifacts: str | None) -> None:
        for artifact in artifacts:
            if artifact is not None:
                remove_artifact(self.store, artifact)

    def _resume(self, expected: dict[str, Any]) -> dict[str, Any] | None:
        study = self.trial.study
        retry_of = frozen_trial(study, self.trial.number).system_attrs.get(SYS_RETRY_OF)
        found = None if retry_of is None else frozen_trial(study, retry_of).user_attrs.get(ATTR_CHECKPOINT)
        if not found:
            return None
        try:
            with self.store.open_reader(found["artifact"]) as reader:
                # Onto the CPU: generators take their states there only, rank 0 sends it on from there, and
                # loading a model's or an optimizer's state copies it to their device.
                written = torch.load(io.BytesIO(reader.read()), map_location="cpu", weights_only=True)
            form = written.get("format") if isinstance(written, dict) else None
            state = unpacked(written) if form == FORMAT else None
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable checkpoint is refused, not fatal
            return self._refuse(retry_of, f"it could not be read ({_unreadable(exc)})")
        problem = (f"it has format {form!r}, this automl reads {FORMAT}" if state is None
                   else mismatch(state.get("identity", {}), expected))
        if problem is not None:
            self.inherited = found["artifact"]  # of no use to any trial now: removed with this one's
            return self._refuse(retry_of, problem)
        self.inherited = found["artifact"]
        # Named as this trial's too: if it dies before saving its own, its retry resumes from the same one.
        set_user_attrs(study, trial_id(self.trial), {ATTR_CHECKPOINT: found})
        charged = Ledger(study_engine(study), study.study_name).spent_of(retry_of)
        self.uncharged = max(0.0, found["spent_seconds"] - charged)
        self.attrs = {ATTR_RESUMED: {"trial": retry_of, **{k: found[k] for k in ("step", "progress", "spent_seconds")}},
                      ATTR_LOST: max(0.0, charged - found["spent_seconds"])}
        return state

    def _refuse(self, retry_of: int, reason: str) -> None:
        print(f"automl: trial {self.trial.number} does not resume trial {retry_of}'s checkpoint: {reason}; "
              "it trains from scratch", file=sys.stderr)
        self.attrs = {ATTR_RESUME_REFUSED: reason}
        return None


def follower_checkpointing(group: TrialGroup, every: Every | None, expected: dict[str, Any]) -> Checkpointing:
    """How a rank other than 0 saves (it hands its part to rank 0, which writes) and resumes (what rank 0 sends)."""
    return Checkpointing(save=_written_by_rank_0, every=every, resume=shared_resume(group, None), identity=expected,
                         group=group)


def shared_resume(group: TrialGroup, state: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rank 0's ``state`` to resume from (None: the trial starts from scratch), on every rank (all must call it)."""
    written = group.share(packed(state) if group.is_main and state is not None else None)
    return state if group.is_main or written is None else unpacked(written)


def _written_by_rank_0(state: dict[str, Any]) -> None:
    raise AssertionError("only rank 0 of a trial writes its checkpoints")  # with_ranks gives the others None


def drop_checkpoint(store: FileSystemArtifactStore | None, trial: optuna.trial.FrozenTrial) -> None:
    """Remove the checkpoint ``trial`` names: it ended for good (no retry will run), and none will resume it."""
    found = trial.user_attrs.get(ATTR_CHECKPOINT)
    if store is not None and found:
        remove_artifact(store, found["artifact"])


def remove_artifact(store: FileSystemArtifactStore, artifact: str) -> None:
    try:
        store.remove(artifact)
    except ArtifactNotFound:
        pass  # removed already: by a retry that resumed it, or a recovery before this one


def _unreadable(exc: BaseException) -> str:
    """Why a checkpoint file would not load, in one line. torch's unpickler explains itself over several lines
    and advises loading with weights_only=False, which would run whatever code a file not ours holds: its
    words are left out."""
    if isinstance(exc, pickle.UnpicklingError):
        return f"{type(exc).__name__}: not a checkpoint automl wrote; it was refused unread"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["TrialCheckpoints", "drop_checkpoint", "follower_checkpointing", "identity", "mismatch", "shared_resume"]
