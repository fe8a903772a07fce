"""Stopping on request: SIGINT and SIGTERM become one :class:`Interrupted`, and a worker stops when its parent dies.

Schedulers, ``timeout``, ``docker stop``, Slurm and Kubernetes stop a program with SIGTERM; a person
with Ctrl-C. Both end a study the same way: the running trial is failed as ``interrupted``, its
time settled, and the next ``automl run`` retries it. The exit code is 128 + the signal's number.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

PARENT_POLL_SECONDS = 1.0
PARENT_PID_VAR = "AUTOML_PARENT_PID"
"""Set for each worker process to the pid of the ``automl run --workers N`` that started it."""
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; ``signum`` decides the exit code."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: KeyboardInterrupt) -> int:
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def signal_name(exc: KeyboardInterrupt) -> str:
    return signal.Signals(exc.signum).name if isinstance(exc, Interrupted) else "SIGINT"


class _Stop:
    """The first stop signal received, and whether it is to be raised at once or at the next checkpoint."""

    signum: int | None = None
    deferred = False


_stop = _Stop()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """In the block, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (the first of them: later
    ones are ignored, so that failing and settling the running trial is not itself cut short). The
    handlers before it are put back after it (a no-op outside the main thread, where none can be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _stop.signum is not None:
            return
        _stop.signum = signum
        if not _stop.deferred:
            raise Interrupted(signum)

    before = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _stop.signum = None
        for signum, previous in before.items():
            signal.signal(signum, previous)


@contextmanager
def at_checkpoints() -> Iterator[None]:
    """In the block, a stop signal is raised only where :func:`checkpoint` is called (a training step, the
    next trial): raised from a handler, it could land in a garbage collector's callback, which
    swallows it, or half-way through writing a trial's record."""
    before, _stop.deferred = _stop.deferred, True
    try:
        yield
    finally:
        _stop.deferred = before
    if _stop.signum is not None:  # came after the block's last checkpoint
        raise Interrupted(_stop.signum)


def checkpoint() -> None:
    """Raise :class:`Interrupted` if a stop signal has come (a no-op, one attribute read, otherwise)."""
    if _stop.signum is not None and _stop.deferred:
        raise Interrupted(_stop.signum)


def stop_pending() -> bool:
    """Whether the next :func:`checkpoint` will raise: a stop signal has come (a trial saves itself first)."""
    return _stop.signum is not None and _stop.deferred


def stop_with_parent(parent: int) -> None:
    """SIGTERM this process when the process ``parent`` dies (a killed ``automl run --workers N``): the
    kernel's parent-death signal on Linux, and a thread that watches the parent everywhere."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # the watching thread below still notices
    threading.Thread(target=_watch_parent, args=(parent,), name="automl-parent", daemon=True).start()


def _watch_parent(parent: int) -> None:
    # The parent may have died before prctl ran: then this process was handed to another parent at once.
    while os.getppid() == parent:
        threading.Event().wait(PARENT_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["PARENT_PID_VAR", "Interrupted", "at_checkpoints", "checkpoint", "exit_code", "signal_name", "stop_on_signals",
           "stop_pending", "stop_with_parent"]
