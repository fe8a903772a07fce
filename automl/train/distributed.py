"""One trial on several devices: the ranks' process group, and what they agree on while they train together.

Data parallel as DDP does it: one process per device, each holding the whole model, each training on its own
shard of every global batch, with the gradients averaged by one all-reduce before every optimizer step. The
``DistributedDataParallel`` wrapper itself is not used, so that the tricks keep seeing the plain model (a
frozen layer, an averaged copy, SAM's two passes); its float buffers (BatchNorm's statistics) are averaged in
the same all-reduce, so every rank holds identical weights after every step. Rank 0 is the one that talks to
Optuna: it sends the trial to the others and its pruning decisions are theirs.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import traceback
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
import torch.distributed as dist

from automl.errors import TrialFailed, UserError

if TYPE_CHECKING:
    from automl.run import Run

RENDEZVOUS_TIMEOUT = datetime.timedelta(minutes=5)
"""How long the ranks wait for each other to start (to load the data, build the plugin host)."""
RANK_TIMEOUT = datetime.timedelta(hours=24)
"""How long a rank waits in one collective: followers wait there for the next trial while rank 0 records,
recovers and reserves (retrying a database that is away); a rank that dies closes its sockets, which ends
the wait of the others at once."""
LOOPBACK = "127.0.0.1"
"""Where ranks that automl starts itself meet (one machine); under torchrun, MASTER_ADDR says."""
STORE_VAR = "AUTOML_RANKS_STORE"
"""Set (to ``host:port``) for the ranks automl starts: they meet at rank 0's store, not torchrun's."""
AGREE_EVERY = 32
"""The ranks of one trial agree on the seconds their steps took at most every this many steps: an agreement is a
collective, and in between each rank predicts the same seconds from the last one (:class:`AgreedClock`)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of one trial, as torchrun's environment gives it."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Ranks | None":
        """The ranks torchrun (or automl) set in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; None without them."""
        env = os.environ if env is None else env
        if "WORLD_SIZE" not in env or "RANK" not in env:
            return None
        rank = int(env["RANK"])
        return cls(rank, int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", rank)))

    def env(self, port: int) -> dict[str, str]:
        """The environment that tells a process it is rank ``self.rank``, as torchrun sets it, and where rank 0's
        store is."""
        return {"RANK": str(self.rank), "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank),
                "MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(port), STORE_VAR: f"{LOOPBACK}:{port}"}


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The device of rank ``ranks``: GPU ``LOCAL_RANK`` of those visible, or the CPU for every rank."""
    return torch.device("cuda", ranks.local_rank) if device.type == "cuda" else device


class TrialGroup:
    """The process group of one trial's ranks, and the few things they exchange."""

    def __init__(self, ranks: Ranks, device: torch.device, store: Any = None, started: str = "") -> None:
        """Join the group (every rank at once); ``store`` is rank 0's ``TCPStore`` when automl started the ranks
        (the others find it in ``STORE_VAR``, and set ``started`` under ``started_key`` there for rank 0 to
        read before they join), else torchrun's ``MASTER_ADDR``/``MASTER_PORT`` are used."""
        self.ranks, self.device = ranks, device
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        self.generation = 0
        """How many times the ranks have left the group together and formed it again (:meth:`regroup`)."""
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if store is None and STORE_VAR in os.environ:
            host, port = os.environ[STORE_VAR].rsplit(":", 1)
            store = dist.TCPStore(host, int(port), ranks.world_size, is_master=False, timeout=RENDEZVOUS_TIMEOUT)
            store.set(started_key(ranks.rank), started)  # rank 0 watches the process until this is set
        if store is None:  # torchrun's store, kept: each generation of the group meets in its own part of it
            store, _, _ = next(dist.rendezvous("env://", ranks.rank, ranks.world_size, timeout=RENDEZVOUS_TIMEOUT))
        self.store = store
        self._form()

    def _form(self) -> None:
        """Form this generation's process group (every rank at once)."""
        store = dist.PrefixStore(f"automl/group/{self.generation}/", self.store)
        dist.init_process_group(self.backend, store=store, rank=self.rank, world_size=self.world_size,
                                timeout=RENDEZVOUS_TIMEOUT)
        self.pg = dist.new_group(backend=self.backend, timeout=RANK_TIMEOUT)
        # Flags the ranks agree on at every stop point, and checkpoints, go through the CPU: on a GPU, reading a
        # flag back from the device would wait for the step in flight.
        self.control = self.pg if self.backend == "gloo" else dist.new_group(backend="gloo", timeout=RANK_TIMEOUT)

    def tell(self, failure: TrialFailed) -> None:
        """Tell the other ranks, through the store, why this rank's part of the trial failed (rank 0 records it:
        :meth:`failure_elsewhere`); before :meth:`regroup`, which is how they learn that it did."""
        self.store.set(_failure_key(self.generation, self.rank),
                       json.dumps({"reason": failure.reason, "detail": failure.detail,
                                   "trick": getattr(failure, "trick", None)}))

    def regroup(self) -> None:
        """Leave the group and form it again with the other ranks: what every rank does once a trial failed on
        any of them (a rank that failed itself has :meth:`tell`-ed why first). Leaving closes this rank's
        connections, so that a rank still waiting in a collective of the failed trial is told at once, rather
        than at :data:`RANK_TIMEOUT`; every rank leaves once per failed trial, so they meet in the same
        generation."""
        self._leave()
        self.generation += 1
        self._form()

    def _leave(self) -> None:
        """Abort and destroy this rank's groups: NCCL's communicators are aborted (a kernel waiting for a rank
        that left is given up); gloo's connections close once the last reference to their group goes."""
        self.pg.abort()
        if self.control is not self.pg:
            self.control.abort()
        self.pg = self.control = None
        dist.destroy_process_group()
        gc.collect()

    def failure_elsewhere(self) -> "RankFailed":
        """The failure another rank told of in this generation (the lowest rank's), as this trial's; a rank that
        left without a word died, and the run cannot go on without it (:class:`RankLost`)."""
        for rank in range(self.world_size):
            key = _failure_key(self.generation, rank)
            if rank != self.rank and self.store.check([key]):
                told = json.loads(self.store.get(key))
                return RankFailed(rank, self.world_size, told["reason"], told["detail"], told["trick"])
        raise RankLost(f"a rank of --gpus-per-trial {self.world_size} left the trial without saying why (it died: "
                       "see its message above, or the system log for an out-of-memory kill); the trial is recorded "
                       "as failed, and the next run goes on with the study")

    def send(self, value: Any) -> None:
        """Rank 0, between two trials: send ``value`` (the next trial, or None for the end) to the other ranks.
        A rank whose part of the last trial failed after its last collective left the group then: rank 0 takes
        its word for it (a warning: the trial's model and value are rank 0's, recorded already), forms the
        group again with it, and sends once more."""
        try:
            self.share(value)
        except RuntimeError as exc:
            if not broke_in_collective(exc):
                raise
            failure = self.failure_elsewhere()
            warnings.warn(f"the last trial failed on rank {failure.rank} of {self.world_size} after its last step "
                          f"with rank 0: {failure.told}; it stays as rank 0 recorded it", RuntimeWarning,
                          stacklevel=2)
            self.regroup()
            self.share(value)

    def receive(self) -> Any:
        """A rank other than 0, between two trials: what rank 0 sends next; if rank 0 left the group (its part
        of the last trial failed after this rank's last collective), the group is formed again first."""
        while True:
            try:
                return self.share()
            except RuntimeError as exc:
                if not broke_in_collective(exc):
                    raise
                self.regroup()

    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world_size(self) -> int:
        return self.ranks.world_size

    @property
    def is_main(self) -> bool:
        return self.ranks.is_main

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
        self.pg = self.control = None

    def share(self, value: Any = None) -> Any:
        """Rank 0's ``value`` (any picklable object), on every rank."""
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.pg, device=self.device)
        return box[0]

    def shared(self, compute: Callable[[], Any]) -> Callable[[], Any]:
        """``compute`` run on rank 0 alone, its result handed to every rank (all of them must call it)."""
        return lambda: self.share(compute() if self.is_main else None)

    def flag(self, value: bool) -> bool:
        return bool(self.share(bool(value)))

    def anyone(self, value: bool) -> bool:
        """Whether ``value`` is true on any of the ranks (a stop signal that reached one of them)."""
        tensor = torch.tensor([int(value)], dtype=torch.int32)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.control)
        return bool(tensor.item())

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` (any picklable object), in rank order, on rank 0; None on the others."""
        values = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, values, group=self.control, group_dst=0)  # pickled on the CPU: no device copy
        return values

    def most(self, values: list[float]) -> list[float]:
        """The largest of each of ``values`` over the ranks: one all-reduce on the CPU (``control``), which waits
        for no device."""
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.control)
        return tensor.tolist()

    def average(self, tensors: Iterable[torch.Tensor]) -> None:
        """Replace each tensor, in place, by its mean over the ranks: one all-reduce per dtype."""
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for tensor in tensors:
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        for group in by_dtype.values():
            flat = torch.cat([t.reshape(-1) for t in group])
            dist.all_reduce(flat, group=self.pg)
            flat /= self.world_size
            for tensor, part in zip(group, flat.split([t.numel() for t in group])):
                tensor.copy_(part.view_as(tensor))

    def average_gradients(self, run: "Run") -> None:
        """The gradients (and the float buffers) of ``run.model`` averaged over the ranks, before its step."""
        model = run.model
        self.average([p.grad for p in model.parameters() if p.grad is not None]
                     + [b for b in model.buffers() if b.is_floating_point()])

    def copy_from_main(self, module: torch.nn.Module) -> None:
        """Every rank starts from rank 0's weights (they were built from one seed: this makes sure)."""
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0, group=self.pg)

    def join(self, loop: Any) -> None:
        """Make a training loop one rank of the trial: its loader's shard, the agreed clock and pruning, the
        averaged step; called before the tricks' setup."""
        run = loop.run
        run.rank, run.world_size = self.rank, self.world_size
        run.sync_gradients = self.average_gradients
        loop.loader.shard(self.rank, self.world_size)
        self.copy_from_main(run.model)
        # Each rank's own clock would stop it at another step, or save a checkpoint at another; an agreed reading
        # is read only where the loop reads a clock at all (a budget or checkpoints in seconds).
        loop.progress_clock = AgreedClock(self.most, loop.train_clock, lambda: run.step, run.budget)
        if loop.report is not None:
            loop.report = self.shared_report(loop.report)

    def shared_report(self, report: Callable[[int, float, float], bool]) -> Callable[[int, float, float], bool]:
        """Rank 0 reports each rung to Optuna; its decision to prune is every rank's."""
        return lambda rung, p, error: self.flag(report(rung, p, error) if self.is_main else False)


class AgreedClock:
    """The training clock as the ranks of one trial read it: every rank makes the same decisions (a rung, the
    end, a checkpoint) at the same step, without a collective at every step.

    At an agreement, the ranks take the largest of their readings and of their step times (``most``, one
    all-reduce); between two, every rank predicts the seconds from the last agreement and the steps taken since.
    Agreements come after 1, 2, 4 ... steps at first, while the step time is still being learnt, then every
    :data:`AGREE_EVERY`; and, near the end of a budget of device time, after half the steps predicted to be left,
    so the last step is decided on a fresh reading. Over ``n`` steps: at most ``n / AGREE_EVERY`` agreements, plus
    ``log2(AGREE_EVERY) + 2`` at the start and as many at the end."""

    def __init__(self, most: Callable[[list[float]], list[float]], clock: Any, steps: Callable[[], int],
                 budget: Any) -> None:
        self.most, self.clock, self.steps, self.budget = most, clock, steps, budget
        self.agreements = 0
        self._first: int | None = None
        self._at = self._next = 0
        self._seconds = self._per_step = 0.0

    def read(self) -> float:
        step = self.steps()
        if self._first is None or step >= self._next:
            self._first = step if self._first is None else self._first
            self._seconds, self._per_step = self.most([self.clock.read(), self.clock.step_seconds()])
            self._at, self._next = step, step + self._gap(step)
            self.agreements += 1
        return self._seconds + (step - self._at) * self._per_step

    def step_seconds(self) -> float:
        """The step time agreed on last (``read`` first)."""
        return self._per_step

    def _gap(self, step: int) -> int:
        """The steps until the next agreement, from one at ``step``."""
        gap = max(1, min(AGREE_EVERY, step - self._first))
        if self.budget.is_time and self._per_step > 0:
            left = (self.budget.amount - self._seconds) / self._per_step
            gap = max(1, min(gap, int(left / 2)))
        return gap


class RankFailed(TrialFailed):
    """A trial's failure on a rank other than this one, as that rank told it: the trial fails on every rank."""

    def __init__(self, rank: int, world_size: int, reason: str, detail: str, trick: str | None) -> None:
        super().__init__(reason, f"on rank {rank} of {world_size}: {detail}")
        self.rank, self.trick, self.told = rank, trick, detail


class RankLost(UserError):
    """A rank left a trial without telling why (it died: killed, out of memory): the others cannot go on."""

    exit_code = 1


def broke_in_collective(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside a ``torch.distributed`` call: another rank left the group (or died)."""
    return any(frame.f_globals.get("__name__", "").startswith("torch.distributed")
               for frame, _ in traceback.walk_tb(exc.__traceback__))


def _failure_key(generation: int, rank: int) -> str:
    return f"automl/failed/{generation}/{rank}"


def started_key(rank: int) -> str:
    """The key of rank 0's store that rank ``rank``, started by automl, sets once it is ready to join."""
    return f"automl/started/{rank}"


def start_store(world_size: int) -> Any:
    """Rank 0's rendezvous on a free port of the loopback (``store.port`` for the other ranks)."""
    return dist.TCPStore(LOOPBACK, 0, world_size, is_master=True, timeout=RENDEZVOUS_TIMEOUT,
                         wait_for_workers=False)  # they are started once its port is known


__all__ = ["AGREE_EVERY", "AgreedClock", "LOOPBACK", "RANK_TIMEOUT", "RENDEZVOUS_TIMEOUT", "STORE_VAR", "RankFailed",
           "RankLost", "Ranks", "TrialGroup", "broke_in_collective", "rank_device", "start_store", "started_key"]
