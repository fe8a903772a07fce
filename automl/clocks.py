"""Clocks that measure device time: CUDA events read without blocking, the CPU time of the process per thread
it may use, and the wall clock for contrast.

A clock counts the seconds of the intervals between ``start()`` and ``stop()`` (so evaluation is timed apart
from training), marks the end of each training step with ``step()``, and predicts what the next step will cost
(``step_seconds()``). ``read()`` never waits for the device; ``synchronize()`` is the one method that does, and
a clock calls it itself only where it must (``elapsed``, and once before any step time is known), so that the
number of waits a run requests is countable: ``syncs``.
"""

from __future__ import annotations

import time
from collections import deque
from functools import partial
from typing import Any, Callable

import torch

from automl.threads import cores

STEPS_AVERAGED = 4
"""The next step is predicted to cost the mean of the last this many: recent enough to follow a step that
changes cost (a bigger batch, a frozen layer), long enough not to stop a run on one slow step."""


def _always() -> bool:
    return True


class StepTimes:
    """The durations of the last steps, and the prediction of the next one (0 before any was measured)."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=STEPS_AVERAGED)

    @property
    def known(self) -> bool:
        return bool(self.recent)

    def add(self, seconds: float) -> None:
        self.recent.append(seconds)

    @property
    def mean(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else 0.0


class Clock:
    """The intervals between ``start()`` and ``stop()``, read from ``now()``: a source that runs with the work
    itself (the CPU, where an operation has ended when it returns), so no reading ever waits."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.syncs = 0
        """The waits for the device this clock requested (none: its source never runs behind)."""
        self._elapsed = 0.0
        self._started: float | None = None
        self._last_mark = 0.0
        self.steps = StepTimes()

    def start(self) -> None:
        self._started = self._last_mark = self.now()

    def stop(self) -> None:
        if self._started is not None:
            self._elapsed += self.now() - self._started
            self._started = None

    def step(self) -> None:
        """The end of a training step: its duration is one the next prediction is made of."""
        now = self.now()
        self.steps.add(now - self._last_mark)
        self._last_mark = now

    def read(self) -> float:
        """Seconds counted so far, the running interval included; never waits."""
        return self._elapsed if self._started is None else self._elapsed + self.now() - self._started

    def step_seconds(self) -> float:
        """What the next step is predicted to cost (0 before one was measured)."""
        return self.steps.mean

    def synchronize(self) -> None:
        """Wait until everything measured so far is settled (nothing to wait for here)."""

    @property
    def elapsed(self) -> float:
        """Seconds of the intervals ended so far (checkpoints save it; a resumed run sets it)."""
        return self._elapsed

    @elapsed.setter
    def elapsed(self, seconds: float) -> None:
        self._elapsed = seconds

    def marker(self) -> Callable[[], bool]:
        """A point in the work done so far: the returned function tells, without waiting, whether the device
        has got there (here it always has)."""
        return _always


def wall_clock() -> Clock:
    """The seconds of the wall clock: what a trial took, however busy the machine was (the old measure; a
    benchmark shows what it does to a trial on a loaded machine)."""
    return Clock(time.perf_counter)


def cpu_threads() -> int:
    """The threads a run may compute on at once: torch's intra-op threads, but no more than the cores the
    process may run on (more threads than cores never add up to more than one core each)."""
    return max(1, min(torch.get_num_threads(), cores()))


def cpu_clock() -> Clock:
    """Device time on the CPU: the process's CPU time divided by the threads it may use, so that a run on a
    loaded machine, whose threads get fewer cycles a second, buys the same steps as on an idle one.

    The process's time (``time.process_time``), not the calling thread's (``time.thread_time``): torch
    computes an operation on its intra-op pool, whose threads are not the one that calls it, and a thread's
    own time would miss their work. The threads are counted once, when the clock is made (a run sets torch's
    threads before it starts). CPU time spent spinning counts too: OpenMP threads that spin while they wait for a
    descheduled peer (libgomp's default wait policy) make a step on a busy machine cost more than alone, which
    ``OMP_WAIT_POLICY=passive`` avoids (``benchmarks/clock_fairness.py``)."""
    threads = cpu_threads()
    return Clock(lambda: time.process_time() / threads)


class CudaClock(Clock):
    """Device time on a GPU, from CUDA events recorded at each ``start()``, ``step()`` and ``stop()``.

    Reading never waits: the events the device has reached (``query()``) give the seconds between them, and the
    steps still in flight are predicted at the measured step time, so a reading is a few steps behind the device
    and exact once it catches up. It waits (``synchronize()``) only where a caller needs the exact seconds
    (``elapsed``: a rung, a checkpoint, the end), and once when steps are in flight before any was measured:
    nothing predicts the first step (often the slowest, with cuDNN's autotuning), and without it the host would
    queue steps past the end of a short budget. ``event`` and ``synchronize`` are CUDA's own unless given (a
    test gives objects that behave like them, to count the waits on the CPU).
    """

    def __init__(self, device: torch.device | None = None, *, event: Callable[[], Any] | None = None,
                 synchronize: Callable[[], None] | None = None) -> None:
        super().__init__(time.perf_counter)
        self._event = event or partial(torch.cuda.Event, enable_timing=True)
        self._wait = synchronize or partial(torch.cuda.synchronize, device)
        self._pending: deque[tuple[str, Any]] = deque()
        """Events recorded that the device has not reached yet, in order, each with what it marks."""
        self._last: Any = None
        """The latest event of the running interval that the device has reached."""
        self._in_flight = 0
        self._running = False

    def _record(self, kind: str) -> Any:
        event = self._event()
        event.record()
        self._pending.append((kind, event))
        return event

    def _settle(self) -> None:
        """Count the seconds up to the latest event the device has reached, without waiting."""
        while self._pending and self._pending[0][1].query():
            kind, event = self._pending.popleft()
            if kind != "start":
                seconds = self._last.elapsed_time(event) / 1000.0  # CUDA gives milliseconds
                self._elapsed += seconds
                if kind == "step":
                    self._in_flight -= 1
                    self.steps.add(seconds)
            self._last = None if kind == "stop" else event

    def start(self) -> None:
        self._record("start")
        self._running = True

    def stop(self) -> None:
        """End the interval without waiting for it: its seconds are settled by a later reading."""
        if self._running:
            self._record("stop")
            self._running = False

    def step(self) -> None:
        self._record("step")
        self._in_flight += 1
        self._settle()

    def read(self) -> float:
        self._settle()
        if self._in_flight and not self.steps.known:
            self.synchronize()
        return self._elapsed + self._in_flight * self.steps.mean

    def synchronize(self) -> None:
        """Wait for the device, if it has not reached every event recorded yet, and settle them all."""
        self._settle()
        if self._pending:
            self._wait()
            self.syncs += 1
            self._settle()

    @property
    def elapsed(self) -> float:
        """The exact seconds counted so far: waits for the device when some are still in flight."""
        self.synchronize()
        return self._elapsed

    @elapsed.setter
    def elapsed(self, seconds: float) -> None:
        self.synchronize()
        self._elapsed = seconds

    def marker(self) -> Callable[[], bool]:
        event = self._event()
        event.record()
        return event.query


def clock_for(device: torch.device | str) -> Clock:
    """The clock that measures device time on ``device``."""
    return CudaClock(torch.device(device)) if torch.device(device).type == "cuda" else cpu_clock()


__all__ = ["Clock", "CudaClock", "STEPS_AVERAGED", "StepTimes", "clock_for", "cpu_clock", "cpu_threads",
           "wall_clock"]
