"""Tests of the device clocks and of how the loop reads them: the half-step rule, no clock for budgets in steps, and
on a GPU (a substituted device whose events lag behind the host) no wait for it on the step path."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest
import torch

from automl.budget import Budget
from automl.clocks import Clock, CudaClock, clock_for, cpu_clock, cpu_threads
from automl.errors import TrialFailed
from automl.testing import tiny_data, tiny_model, tiny_settings
from automl.train.checkpoints import Checkpointing, Every
from automl.train.distributed import AGREE_EVERY, Ranks, TrialGroup, start_store
from automl.train.loop import NAN_CHECK_EVERY, train
from automl.trick import Trick

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return tiny_data()


class FakeGpu:
    """A GPU as CUDA events see it: the host queues steps, and the device reaches an event once ``lag`` more steps
    were queued after it, or once something waits for it (``synchronize``, which it counts)."""

    def __init__(self, lag: int = 3) -> None:
        self.lag, self.time, self.queued = lag, 0.0, 0
        self.recorded = self.drained = self.syncs = 0

    def enqueue(self, seconds: float) -> None:
        """One step of ``seconds`` of device time, queued."""
        self.time += seconds
        self.queued += 1

    def synchronize(self) -> None:
        self.syncs += 1
        self.drained = self.recorded

    def event(self) -> "FakeEvent":
        return FakeEvent(self)

    def clock(self, device: torch.device | None = None) -> CudaClock:
        return CudaClock(event=self.event, synchronize=self.synchronize)


class FakeEvent:
    """A CUDA event on a :class:`FakeGpu`: reached once the steps queued before it are done."""

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu

    def record(self) -> None:
        self.at, self.after, self.index = self.gpu.time, self.gpu.queued, self.gpu.recorded
        self.gpu.recorded += 1

    def query(self) -> bool:
        return self.after + self.gpu.lag <= self.gpu.queued or self.index < self.gpu.drained

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.query() and end.query(), "CUDA raises when either event is not reached yet"
        return (end.at - self.at) * 1000.0


class Work(Trick):
    """Each step costs ``seconds[step]`` (the last one over again past its end) of a substituted device or clock."""

    name = "work"

    def __init__(self, spend, seconds) -> None:
        self.spend, self.seconds, self.steps = spend, list(seconds), 0

    def on_step_end(self, run, loss) -> None:
        self.spend(self.seconds[min(self.steps, len(self.seconds) - 1)])
        self.steps += 1


class FakeTime:
    """A clock source that moves only when a step spends it."""

    def __init__(self) -> None:
        self.now, self.reads = 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds

    def clock(self, device: torch.device | None = None) -> Clock:
        return Clock(self)


def _train(data, budget, clock, tricks=(), **settings):
    return train(tiny_model(data), data, tiny_settings(**settings), Budget.parse(budget), tricks=list(tricks),
                 clock=clock)


# ---------------------------------------------------------------------------- the half-step rule


@pytest.mark.parametrize("step, budget, steps", [(0.3, "1s", 3), (0.25, "1s", 4), (0.3, "1.1s", 4)])
def test_a_seconds_budget_ends_within_half_a_step_of_it(data, step, budget, steps):
    source = FakeTime()
    work = Work(source.spend, [step])
    result = _train(data, budget, source.clock, [work])
    assert result.steps == steps
    assert abs(result.train_seconds - Budget.parse(budget).amount) <= step / 2 + 1e-9
    assert result.progress == 1.0


def test_a_slow_first_step_is_not_followed_by_one_past_the_budget(data):
    """A 4 s budget whose first step takes 3.8 s: a second like it would end at 7.6 s, so it is not started."""
    source = FakeTime()
    result = _train(data, "4s", source.clock, [Work(source.spend, [3.8, 3.8])])
    assert result.steps == 1 and result.train_seconds == pytest.approx(3.8)


def test_progress_is_below_one_at_every_step_and_one_at_the_end(data):
    class Progress(Trick):
        name = "progress"

        def __init__(self):
            self.seen = []

        def on_step_start(self, run):
            self.seen.append(run.progress)

    source = FakeTime()
    rec = Progress()
    result = _train(data, "2s", source.clock, [Work(source.spend, [0.1]), rec])
    assert len(rec.seen) == result.steps == 20
    assert all(p < 1 for p in rec.seen) and rec.seen == sorted(rec.seen)
    assert rec.seen[-1] == pytest.approx(0.95)
    assert result.progress == 1.0


def test_the_tricks_work_at_rungs_and_the_end_is_charged_but_is_no_progress(data):
    """What a trick does at a rung or at the end (SWA's pass to recompute BatchNorm) is spent by the trial: it is
    in ``eval_seconds``, so the total budget pays for it, but not in the trial budget's progress."""
    source = FakeTime()

    class EndWork(Trick):
        name = "end_work"

        def on_rung(self, run, rung, error):
            source.spend(2.0)

        def on_end(self, run):
            source.spend(3.0)

    result = _train(data, "1s", source.clock, [Work(source.spend, [0.25]), EndWork()], rungs=2)
    assert result.steps == 4 and result.train_seconds == pytest.approx(1.0)
    assert result.eval_seconds == pytest.approx(2 * 2.0 + 3.0)


# ---------------------------------------------------------------------------- budgets in steps read no clock


def test_a_budget_in_steps_reads_no_clock_inside_the_loop(data):
    """The clock is read where the intervals start and stop (the rungs), never at a step: the same number of
    readings for 20 steps as for 200."""
    reads = []
    for steps in (20, 200):
        source = FakeTime()
        _train(data, f"{steps}steps", source.clock, rungs=2)
        reads.append(source.reads)
    assert reads[0] == reads[1] <= 8


def test_a_budget_in_steps_with_checkpoints_in_seconds_reads_its_clock(data):
    source = FakeTime()
    saved = []
    checkpointing = Checkpointing(save=saved.append, every=Every(seconds=1.0))
    train(tiny_model(data), data, tiny_settings(), Budget.parse("20steps"), tricks=[Work(source.spend, [0.25])],
          clock=source.clock, checkpointing=checkpointing)
    assert len(saved) == 4  # after 4, 8, 12 and 16 steps; the 20th ends the run


# ---------------------------------------------------------------------------- a CUDA-like clock


def test_cuda_clock_reads_behind_the_device_without_waiting():
    gpu = FakeGpu(lag=3)
    clock = gpu.clock()
    clock.start()
    gpu.enqueue(0.5)
    clock.step()
    assert clock.read() == pytest.approx(0.5) and gpu.syncs == 1  # nothing predicted the first step: waited once
    for _ in range(9):
        gpu.enqueue(0.5)
        clock.step()
        assert clock.read() == pytest.approx(0.5 * (gpu.queued))  # 3 steps in flight, predicted at 0.5 s each
    assert gpu.syncs == 1
    clock.stop()
    assert clock.elapsed == pytest.approx(5.0) and gpu.syncs == 2
    assert clock.elapsed == pytest.approx(5.0) and gpu.syncs == 2  # settled: read again without waiting


def test_cuda_clock_keeps_the_seconds_a_checkpoint_gives_it():
    gpu = FakeGpu()
    clock = gpu.clock()
    clock.elapsed = 7.0
    clock.start()
    gpu.enqueue(1.0)
    clock.step()
    clock.stop()
    assert clock.elapsed == pytest.approx(8.0)


def test_cuda_clock_counts_no_interval_but_its_own():
    """Work queued while the clock was stopped (an evaluation timed by another clock) is not counted."""
    gpu = FakeGpu(lag=0)
    clock = gpu.clock()
    clock.start()
    gpu.enqueue(1.0)
    clock.step()
    clock.stop()
    gpu.enqueue(5.0)
    clock.start()
    gpu.enqueue(1.0)
    clock.step()
    assert clock.read() == pytest.approx(2.0)


@pytest.mark.parametrize("budget", ["200steps", "1.25s"])
def test_the_loop_waits_for_a_gpu_only_at_rungs_checkpoints_and_the_end(data, budget):
    """Over 200 steps, with a GPU whose events lag 3 steps behind the host: one wait at each rung, one at each
    checkpoint, one at the end (and for a budget in seconds one more, before the first step time is known)."""
    gpu = FakeGpu(lag=3)
    saved = []
    checkpointing = Checkpointing(save=saved.append, every=Every(fraction=0.3))
    result = train(tiny_model(data), data, tiny_settings(rungs=4), Budget.parse(budget),
                   tricks=[Work(gpu.enqueue, [1 / 160])], clock=gpu.clock, checkpointing=checkpointing)
    assert result.steps == 200 and len(result.history) == 4 and len(saved) == 3
    assert result.train_seconds == pytest.approx(1.25)
    first_step = 1 if budget.endswith("s") and not budget.endswith("steps") else 0
    assert gpu.syncs == 4 + len(saved) + 1 + first_step
    assert gpu.syncs <= result.steps / NAN_CHECK_EVERY + 4 + len(saved)


def test_a_nan_is_caught_behind_a_gpu_without_waiting_for_it(data):
    gpu = FakeGpu(lag=3)

    class Poison(Trick):
        name = "poison"

        def transform_batch(self, run, x, y):
            return x * math.nan, y

    work = Work(gpu.enqueue, [0.01])
    with pytest.raises(TrialFailed) as info:
        _train(data, f"{8 * NAN_CHECK_EVERY}steps", gpu.clock, [Poison(), work])
    assert info.value.reason == "nan_loss"
    assert NAN_CHECK_EVERY < work.steps <= 2 * NAN_CHECK_EVERY  # seen at the second look, once the device got
    # past the first
    assert gpu.syncs == 0


# ---------------------------------------------------------------------------- the CPU clock


def test_cpu_clock_counts_compute_per_thread_not_waiting():
    clock = cpu_clock()
    clock.start()
    time.sleep(0.2)
    clock.stop()
    assert clock.elapsed < 0.05
    assert 1 <= cpu_threads() <= torch.get_num_threads()


def test_cpu_clock_counts_compute():
    clock = cpu_clock()
    clock.start()
    x = torch.randn(256, 256)
    started = time.process_time()
    while time.process_time() - started < 0.2:
        x = (x @ x).tanh()
    clock.stop()
    assert clock.elapsed >= 0.2 / cpu_threads() - 0.01


def test_clock_for_picks_the_device_clock():
    assert isinstance(clock_for("cuda"), CudaClock)
    assert not isinstance(clock_for("cpu"), CudaClock)


# ---------------------------------------------------------------------------- ranks agree every few steps


def test_ranks_agree_on_their_clock_every_few_steps_not_every_step(data):
    """A trial's ranks (one, here, over a real gloo group) agree on the seconds spent far less than once a step,
    and still end on time."""
    store = start_store(1)
    group = TrialGroup(Ranks(0, 1, 0), torch.device("cpu"), store=store)
    calls = []
    most = group.most
    group.most = lambda values: calls.append(values) or most(values)
    try:
        source = FakeTime()
        result = train(tiny_model(data), data, tiny_settings(), Budget.parse("3.125s"),
                       tricks=[Work(source.spend, [1 / 64])], clock=source.clock, group=group)
    finally:
        group.close()
    assert result.steps == 200 and result.train_seconds == pytest.approx(3.125)
    assert len(calls) <= 200 / AGREE_EVERY + 2 * math.log2(AGREE_EVERY) + 4


RANK = """
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

from automl.budget import Budget
from automl.clocks import Clock
from automl.testing import tiny_data, tiny_model, tiny_settings
from automl.train.distributed import Ranks, TrialGroup
from automl.train.loop import train
from automl.trick import Trick

rank, port = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
store = dist.TCPStore("127.0.0.1", port, 2, is_master=rank == 0, timeout=timedelta(seconds=60),
                      wait_for_workers=False)
print(store.port, flush=True)
group = TrialGroup(Ranks(rank, 2, rank), torch.device("cpu"), store=store)
now = [0.0]


class Work(Trick):
    name = "work"

    def on_step_end(self, run, loss):
        now[0] += 0.01 * (1 + rank)  # rank 1's steps take twice as long as rank 0's


data = tiny_data()
result = train(tiny_model(data), data, tiny_settings(rungs=2), Budget.parse("1s"), tricks=[Work()],
               clock=lambda device: Clock(lambda: now[0]), group=group)
print(result.steps, len(result.history), flush=True)
group.close()
"""


def test_ranks_with_clocks_of_different_speeds_stop_at_the_same_step(tmp_path):
    """Two gloo ranks whose own clocks disagree (one's steps take twice as long) take the same steps, as many as
    the slower one's clock allows: were each to stop on its own clock, one would wait forever in the other's
    all-reduce (the subprocesses' timeout is the guard)."""
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                                           "AUTOML_RANKS_STORE")}
    main = subprocess.Popen([sys.executable, str(script), "0", "0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = main.stdout.readline().strip()
        other = subprocess.run([sys.executable, str(script), "1", port], capture_output=True, text=True, env=env,
                               timeout=300)
        out, _ = main.communicate(timeout=300)
    finally:
        main.kill()
    assert other.returncode == 0 and main.returncode == 0, other.stderr
    assert out.splitlines()[-1] == other.stdout.splitlines()[-1] == "50 2"
