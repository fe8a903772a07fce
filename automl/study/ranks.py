"""The ranks of ``automl run --gpus-per-trial K``: started as torchrun would, rank 0 runs the study, the others follow.

Rank 0 is the ``automl run`` (or worker) process itself: it asks Optuna for each trial, records it and settles
it in the ledger, exactly as on one device. Ranks 1..K-1 are the same command started again with torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), or started by torchrun
itself; they write nothing to the database: each receives its trial's params and seed from rank 0, trains its
shard of every batch beside it, and waits for the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Protocol, Sequence

import torch
from optuna.trial import FixedTrial

from automl.budget import Budget
from automl.errors import UserError
from automl.records import ATTR_UNAVAILABLE
from automl.study.plan import Outcome, TrialPlan
from automl.study.processes import child_env
from automl.train.distributed import RENDEZVOUS_TIMEOUT, Ranks, TrialGroup, start_store, started_key
from automl.run import TrialContext

FOLLOWER_EXIT_SECONDS = 30.0
"""How long rank 0, once the study is done, waits for the other ranks to exit before it kills them."""
FOLLOWER_POLL_SECONDS = 0.1
"""How often rank 0, while the ranks it started get ready, looks whether one of them has exited."""


class TrialFollower(Protocol):
    """What a rank other than 0 drives (``automl.study.objective.Objective``): plan the trial rank 0 sent, as
    rank 0 decided it, then train its share of it."""

    def plan(self, trial: Any, context: TrialContext, seed: int,
             unavailable: dict[str, str] | None = None) -> TrialPlan: ...

    def train(self, trial: Any, plan: TrialPlan) -> Outcome: ...

    budget: Budget
    search: bool


@dataclass(frozen=True)
class TrialMessage:
    """What rank 0 sends the other ranks for each trial it trains."""

    params: dict[str, Any]
    number: int
    seed: int
    study_name: str
    unavailable: dict[str, str]
    """The tricks rank 0 found unavailable for the trial, or turned off, with why: the other ranks take this
    decision as it is, since what it rests on (the best trial's model, the errors of earlier trials) is rank
    0's to know."""
    budget: Budget
    """The trial's budget: a comparison's cells differ in it from the study file's, and from one another."""
    search: bool
    """False for a comparison's cell, trained at its budget alone (``Objective.search``)."""
    start_rung: int = 0
    rungs_done: dict[int, float] = field(default_factory=dict)
    """Where the trial's budget rungs start (``TrialPlan``): every rank trains the same runs."""


def check_ranks(k: int, device: torch.device, device_option: str | None, workers: int,
                env_ranks: Ranks | None) -> None:
    """Refuse a ``--gpus-per-trial K`` that cannot run, before anything is written."""
    if k < 1:
        raise UserError(f"--gpus-per-trial must be at least 1, got {k}")
    if env_ranks is not None and workers > 1:
        raise UserError(f"--workers {workers} under torchrun: torchrun starts the processes of one trial; "
                        "leave --workers out, or run automl without torchrun")
    if env_ranks is not None and env_ranks.world_size != k and k > 1:
        raise UserError(f"--gpus-per-trial {k} under torchrun with WORLD_SIZE={env_ranks.world_size}: give "
                        f"torchrun --nproc-per-node {k}, or leave --gpus-per-trial out (torchrun's count is used)")
    if k == 1:
        return
    if device.type == "cpu" and device_option in (None, "auto"):
        raise UserError(f"--gpus-per-trial {k}: no CUDA GPU is visible; to run each trial as {k} processes on "
                        "the CPU (gloo), give --device cpu")
    if device.type == "cuda":
        if device_option not in (None, "auto", "cuda"):
            raise UserError(f"--gpus-per-trial {k} with --device {device_option}: each trial takes the first {k} "
                            "GPUs of its worker; choose them with CUDA_VISIBLE_DEVICES, and give --device cuda")
        visible = torch.cuda.device_count()
        if k * workers > visible:
            raise UserError(f"--gpus-per-trial {k} with --workers {workers} needs {k * workers} GPUs, but "
                            f"{visible} are visible; lower --gpus-per-trial or --workers")


def env_for_workers(k: int, workers: int, device: torch.device) -> list[dict[str, str]]:
    """Each worker's own ``CUDA_VISIBLE_DEVICES``: the next ``k`` of the GPUs visible (nothing on the CPU)."""
    if device.type != "cuda" or k == 1:
        return [{} for _ in range(workers)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(torch.cuda.device_count())]
    return [{"CUDA_VISIBLE_DEVICES": ",".join(ids[w * k:(w + 1) * k])} for w in range(workers)]


@contextmanager
def trial_ranks(ranks: Ranks, device: torch.device, argv: Sequence[str], url: str, threads: int | None,
                sources: dict[str, str]) -> Iterator[TrialGroup]:
    """This process's group of ranks (``device`` is this rank's own), with ranks 1..K-1 started here when this
    is rank 0 and torchrun did not start them (as ``automl ARGV``: rank 0's command and options), and refused
    unless they got as far as rank 0 with the same ``sources`` (where each trick and the model come from); once
    the block ends on rank 0, the others are told the study is done (or, if the block raised, killed: they hold
    nothing)."""
    store, followers = None, []
    try:
        if ranks.is_main and Ranks.from_env() is None:
            store = start_store(ranks.world_size)
            followers = _start_followers(ranks.world_size, store.port, argv, url, threads)
            _await_followers(store, followers, sources)
        group = TrialGroup(ranks, device, store, started=json.dumps(sources, sort_keys=True))
    except BaseException:
        _kill(followers)
        _wait(followers)
        raise
    try:
        yield group
        if group.is_main:
            group.send(None)
    except BaseException:
        _kill(followers)
        raise
    finally:
        _wait(followers)
        group.close()


def _start_followers(k: int, port: int, argv: Sequence[str], url: str, threads: int | None) -> list[subprocess.Popen]:
    env = child_env(url)
    threads_option = ["--threads", str(threads)] if threads else []
    # A session of their own: Ctrl-C reaches rank 0 alone, which stops them once it has settled its trial.
    return [subprocess.Popen([sys.executable, "-m", "automl", *argv, *threads_option],
                             env={**env, **Ranks(rank, k, rank).env(port)}, start_new_session=True)
            for rank in range(1, k)]


def _await_followers(store: Any, followers: list[subprocess.Popen], sources: dict[str, str]) -> None:
    """Wait until every rank automl started has read the study file and the data, as rank 0 has; one that
    exits first ends the wait at once (rather than at the rendezvous' timeout), before anything is written,
    and so does one whose tricks or model come from elsewhere (a plugin that failed to load there alone)."""
    k = len(followers) + 1
    keys = [started_key(rank) for rank in range(1, k)]
    deadline = time.monotonic() + RENDEZVOUS_TIMEOUT.total_seconds()
    while not store.check(keys):
        for rank, process in enumerate(followers, start=1):
            if process.poll() is not None:
                raise UserError(f"rank {rank} of --gpus-per-trial {k} exited with code {process.returncode} "
                                "before the trial's ranks met (its own message is above); nothing was written "
                                "to the study")
        if time.monotonic() > deadline:
            raise UserError(f"the ranks of --gpus-per-trial {k} did not all start within "
                            f"{RENDEZVOUS_TIMEOUT.total_seconds():g} s; see their messages above")
        time.sleep(FOLLOWER_POLL_SECONDS)
    for rank, key in enumerate(keys, start=1):
        _check_sources(rank, k, sources, json.loads(store.get(key)))


def _check_sources(rank: int, k: int, ours: dict[str, str], theirs: dict[str, str]) -> None:
    """Refuse a rank that would train other tricks, or another model, than rank 0 does."""
    differ = sorted(name for name in {*ours, *theirs} if ours.get(name) != theirs.get(name))
    if differ:
        name = differ[0]
        raise UserError(f"rank {rank} of --gpus-per-trial {k} has {name!r} from {theirs.get(name, 'nowhere')}, "
                        f"but rank 0 has it from {ours.get(name, 'nowhere')}: every rank must load the same "
                        "plugins (see the warnings above); nothing was written to the study")


def _kill(followers: list[subprocess.Popen]) -> None:
    for process in followers:
        process.kill()


def _wait(followers: list[subprocess.Popen]) -> None:
    for process in followers:
        try:
            process.wait(FOLLOWER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def follow(group: TrialGroup, objective: TrialFollower) -> int:
    """A rank other than 0: train each trial rank 0 sends, until it says the study is done."""
    while (message := group.receive()) is not None:
        trial = FixedTrial(message.params, message.number)
        objective.budget, objective.search = message.budget, message.search  # the cells of `automl compare`
        context = TrialContext(study_name=message.study_name, trial_number=message.number,
                               best_checkpoint=lambda: None)  # rank 0's answer is shared (see share_trial)
        plan = objective.plan(trial, context, message.seed, message.unavailable)
        objective.train(trial, replace(plan, start_rung=message.start_rung, rungs_done=message.rungs_done))
    return 0


def share_trial(group: TrialGroup, trial: Any, plan: TrialPlan, budget: Budget, search: bool) -> TrialPlan:
    """On rank 0, send the trial to the other ranks; on every rank, the plan whose questions to the study
    (its best model) rank 0 answers for all."""
    if group.is_main:
        group.send(TrialMessage(dict(trial.params), trial.number, plan.seed, trial.study.study_name,
                                dict(trial.user_attrs.get(ATTR_UNAVAILABLE, {})), budget, search, plan.start_rung,
                                dict(plan.rungs_done)))
    context = replace(plan.context, best_checkpoint=group.shared(plan.context.best_checkpoint))
    return replace(plan, context=context)


__all__ = ["TrialFollower", "TrialMessage", "check_ranks", "env_for_workers", "follow", "share_trial", "trial_ranks"]
