"""A checkpoint inside a trial: what a running run saves at a stop point, and how a resumed run takes it back.

A checkpoint holds everything the loop needs to go on exactly where it was: the model, the optimizer,
the ``GradScaler``, the loader's position, every random generator's state, the progress, the clocks and
each trick's own state (``Trick.state_dict``), as tensors and plain data, so that it loads with
``torch.load(weights_only=True)``. It is taken between two steps (the stop points of
``automl.interrupts``): every ``checkpoint_every``, and at a stop signal before it is raised.

The ranks of one trial on several devices (``automl.train.distributed``) save together, at one step: what
is the same on every rank (the model, the optimizer, the progress) is saved once, and what may differ (the
random generators, the loader's augmentation generator, the loss summed over the rank's shards, a trick's
state that differs from rank 0's) for each rank under ``"ranks"``; rank 0 alone writes it.
"""

from __future__ import annotations

import math
import random
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
import torch

from automl.budget import Budget
from automl.errors import TrialFailed, UserError
from automl.interrupts import Interrupted, stop_pending

if TYPE_CHECKING:
    from automl.budget import DeviceClock
    from automl.train.distributed import TrialGroup
    from automl.train.loader import Loader
    from automl.run import Run
    from automl.trick import Trick

FORMAT = 2
"""The form of a checkpoint as written (:func:`packed`); one of another form is not resumed."""
TENSOR = "__tensor__"
"""The key of the placeholder that stands for a tensor in a packed checkpoint; no state may use it."""
DEFAULT_EVERY = 0.1
"""Without ``checkpoint_every``, a long trial saves after every tenth of its budget."""
DEFAULT_FROM_SECONDS = 600.0
"""Without ``checkpoint_every``, trials shorter than this (device seconds), or in steps or epochs, save only at a
stop signal: the quickstart's trials are seconds long and would pay for checkpoints they never need."""
OFF = "off"
# Progress of a steps budget is step / N: a save that lands on a step may round to just below it.
_SLACK = 1e-9
BAD_CHECKPOINT = "bad_checkpoint"
"""The ``end_reason`` of a trial whose checkpoint passed its checks but could not be loaded."""


class Resumable(Protocol):
    """A training loop as its checkpoints see it (``automl.train.loop``'s, which imports this module, so this
    one cannot import it): its parts, progress and training clock, and its own state."""

    run: Run
    loader: Loader
    tricks: tuple[Trick, ...]
    p: float
    train_clock: DeviceClock

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Every:
    """When a run saves: after every ``fraction`` of its budget, or every ``seconds`` of training."""

    fraction: float | None = None
    seconds: float | None = None

    @classmethod
    def of(cls, value: str | float | None, budget: Budget) -> "Every | None":
        """The rule ``[study] checkpoint_every`` gives a trial of ``budget``; None: only at a stop signal."""
        if value is None:
            long = budget.is_time and budget.amount >= DEFAULT_FROM_SECONDS
            return cls(fraction=DEFAULT_EVERY) if long else None
        if value == OFF:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not 0 < value <= 1:
                raise UserError(f"checkpoint_every {value!r} as a number is a fraction of the trial budget in "
                                "(0, 1]; give e.g. 0.1, or device time such as '30s', or 'off'")
            return cls(fraction=float(value))
        seconds = Budget.parse(value)
        if not seconds.is_time:
            raise UserError(f"checkpoint_every {value!r} must be device time such as '30s', a fraction of the "
                            "trial budget such as 0.1, or 'off'")
        return cls(seconds=seconds.amount)

    def next_after(self, progress: float, seconds: float) -> float:
        """The progress or seconds (whichever this rule counts) at which the save after this point is due."""
        step, now = (self.fraction, progress) if self.fraction is not None else (self.seconds, seconds)
        return (math.floor(now / step + _SLACK) + 1) * step

    def count(self, progress: float, seconds: float) -> float:
        return progress if self.fraction is not None else seconds


@dataclass
class Checkpointing:
    """How one run checkpoints: when (``every``; None: only at a stop signal), where (``save``), and the
    checkpoint it resumes from (``resume``), if any. ``identity`` is saved with each checkpoint."""

    save: Callable[[dict[str, Any]], None]
    every: Every | None = None
    flush: Callable[[], None] = lambda: None
    """Wait until every checkpoint ``save`` took is written (a ``save`` may write in the background)."""
    resume: dict[str, Any] | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    """Seconds spent writing checkpoints (spent by the trial, but not training: progress leaves them out)."""
    resumed_seconds: float = 0.0
    """The device-seconds the resumed checkpoint had spent: this run's own are those it spends beyond them."""
    group: "TrialGroup | None" = None
    """The ranks of a trial on several devices: each saves at the same stop points, and rank 0 alone calls
    ``save``, with the others' own parts (:func:`with_ranks`)."""
    _due: float = math.inf

    def start(self, loop: "Resumable") -> None:
        """Before the first step: resume, if there is a checkpoint, and schedule the next save."""
        if self.resume is not None:
            restore(loop, self.resume)
            self.seconds = self.resume["loop"]["checkpoint_seconds"]
            self.resumed_seconds = self.resume["loop"]["spent_seconds"]
        if self.every is not None:
            self._due = self.every.next_after(loop.p, loop.train_clock.elapsed)

    def at_stop_point(self, loop: "Resumable", seconds: float) -> None:
        """Between two steps: save when one is due, or when a stop signal is about to be raised."""
        due = self.every is not None and self.every.count(loop.p, seconds) + _SLACK >= self._due
        signalled = stop_pending()
        # A signal may reach one rank (rank 0, under automl): they all save, at this step, and stop.
        stopping = signalled if self.group is None else self.group.anyone(signalled)
        if not (due or stopping):
            return
        loop.train_clock.stop()
        started = time.perf_counter()
        state = capture(loop, self)
        if self.group is not None:
            state = with_ranks(self.group, state)
        if state is not None:
            self.save(state)
            if stopping:  # the process ends next: what it saves must be written first
                self.flush()
        if stopping and not signalled:
            raise Interrupted(signal.SIGTERM)  # another rank was stopped: this one, whose part is saved, ends too
        self.seconds += time.perf_counter() - started
        if self.every is not None:
            self._due = self.every.next_after(loop.p, seconds)
        loop.train_clock.start()


def capture(loop: "Resumable", checkpointing: Checkpointing) -> dict[str, Any]:
    """The checkpoint of ``loop`` between two steps."""
    run, own = loop.run, loop.state_dict()
    # Device-seconds, as the ledger charges them: the wall-clock seconds on each of the trial's devices.
    spent = (own["train_seconds"] + own["eval_seconds"] + checkpointing.seconds) * run.world_size
    return {
        "identity": checkpointing.identity,
        "run": {"step": run.step, "epoch": run.epoch, "samples": run.samples, "progress": run.progress},
        "loop": {**own, "checkpoint_seconds": checkpointing.seconds, "spent_seconds": spent,
                 "resumed_seconds": checkpointing.resumed_seconds},
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "grad_scaler": None if run.grad_scaler is None else run.grad_scaler.state_dict(),
        "loader": loop.loader.state_dict(), "rng": rng_states(), "attrs": dict(run.attrs),
        "tricks": {trick.name: trick.state_dict(run) for trick in loop.tricks},
    }


def own_part(state: dict[str, Any]) -> dict[str, Any]:
    """What of a captured ``state`` may differ between the ranks of one trial: it is saved for each rank."""
    return {"rng": state["rng"], "augment": state["loader"]["augment"], "loss_sum": state["loop"]["loss_sum"],
            "tricks": state["tricks"]}


def with_ranks(group: "TrialGroup", state: dict[str, Any]) -> dict[str, Any] | None:
    """On rank 0, its captured ``state`` with every other rank's own part under ``"ranks"`` (every rank calls
    this at the same stop point); None on the others. A trick's state is kept for a rank only where it differs
    from rank 0's: most are the same on every rank (an average of identical weights), and are saved once."""
    parts = group.gather(packed(own_part(state)))  # flat CPU copies: pickled quickly, whatever the device
    if parts is None:
        return None
    tricks = state["tricks"]
    others = [unpacked(part) for part in parts[1:]]
    for part in others:
        part["tricks"] = {name: own for name, own in part["tricks"].items() if not same(own, tricks.get(name))}
    return {**state, "ranks": others}


def rank_state(state: dict[str, Any], rank: int) -> dict[str, Any]:
    """``state`` as rank ``rank`` resumes it: the part every rank shares, with the rank's own."""
    if rank == 0:
        return state
    part = state["ranks"][rank - 1]
    return {**state, "rng": part["rng"], "loader": {**state["loader"], "augment": part["augment"]},
            "loop": {**state["loop"], "loss_sum": part["loss_sum"]}, "tricks": {**state["tricks"], **part["tricks"]}}


def same(a: Any, b: Any) -> bool:
    """Whether two states are equal, tensors compared by value (on the CPU: they may be on two devices)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def packed(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as written: its tensors copied into one flat CPU tensor per dtype and device, and its tree
    with a placeholder for each. What the run does next cannot change the copy, so it can be written while the
    run goes on; and ``torch.save`` writes a few large tensors in a fraction of the time it takes for the
    hundreds of small ones of a model, its optimizer and its generators (4 ms against 1 for a ResNet-20)."""
    parts: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, int] = {}

    def place(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            key = f"{str(value.dtype).removeprefix('torch.')}/{value.device}"
            parts.setdefault(key, []).append(value.detach().reshape(-1))
            offset = sizes.get(key, 0)
            sizes[key] = offset + value.numel()
            return {TENSOR: [key, offset, list(value.shape)]}
        if isinstance(value, dict):
            if TENSOR in value:
                raise ValueError(f"checkpoint state may not use the key {TENSOR!r}")
            return {k: place(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return (list if isinstance(value, list) else tuple)(place(v) for v in value)
        return value

    tree = place(state)
    return {"format": FORMAT, "tree": tree,
            "buffers": {key: torch.cat(tensors).to("cpu", copy=True) for key, tensors in parts.items()}}


def unpacked(written: dict[str, Any]) -> dict[str, Any]:
    """The state :func:`packed` wrote, each tensor a copy of its own (on the buffers' device)."""
    buffers = written["buffers"]

    def take(value: Any) -> Any:
        if isinstance(value, dict):
            if TENSOR in value:
                key, offset, shape = value[TENSOR]
                return buffers[key][offset:offset + math.prod(shape)].view(shape).clone()
            return {k: take(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return (list if isinstance(value, list) else tuple)(take(v) for v in value)
        return value

    return take(written["tree"])


def restore(loop: "Resumable", state: dict[str, Any]) -> None:
    """Put ``loop`` (its tricks set up) where ``state`` was taken; a checkpoint that does not fit the run fails
    the trial (:data:`BAD_CHECKPOINT`) with the reason. One rank of several takes its own part of it."""
    run = loop.run
    try:
        state = rank_state(state, run.rank)
        for trick in loop.tricks:
            trick.load_state_dict(run, state["tricks"].get(trick.name, {}))
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if run.grad_scaler is not None and state["grad_scaler"] is not None:
            run.grad_scaler.load_state_dict(state["grad_scaler"])
        loop.loader.load_state_dict(state["loader"])
    except (KeyError, IndexError, ValueError, RuntimeError, TypeError) as exc:
        raise TrialFailed(BAD_CHECKPOINT, f"the checkpoint does not fit this run: {type(exc).__name__}: "
                                          f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    for key, value in state["run"].items():
        setattr(run, key, value)
    loop.load_state_dict(state["loop"])
    run.attrs.clear()
    run.attrs.update(state["attrs"])
    set_rng_states(state["rng"])


def rng_states() -> dict[str, Any]:
    """Every global random generator's state: torch's (CPU and each CUDA device), numpy's and Python's."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                      "has_gauss": has_gauss, "gauss": gauss},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def generator_state(generator: torch.Generator | None) -> torch.Tensor | None:
    """A trick's own torch generator as checkpoint data (None before it was made)."""
    return None if generator is None else generator.get_state()


def numpy_generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """A numpy ``Generator``'s state as checkpoint data: its 128-bit integers as strings."""
    return _stringify(rng.bit_generator.state)


def set_numpy_generator_state(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = _unstringify(state)


def _stringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    return f"int:{value}" if isinstance(value, int) and not isinstance(value, bool) else value


def _unstringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unstringify(v) for k, v in value.items()}
    return int(value[4:]) if isinstance(value, str) and value.startswith("int:") else value


__all__ = ["BAD_CHECKPOINT", "Checkpointing", "DEFAULT_EVERY", "DEFAULT_FROM_SECONDS", "Every", "FORMAT", "OFF",
           "Resumable", "TENSOR", "capture", "generator_state", "numpy_generator_state", "own_part", "packed",
           "rank_state", "restore", "rng_states", "same", "set_numpy_generator_state", "set_rng_states", "unpacked",
           "with_ranks"]
