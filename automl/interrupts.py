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
from typing import Any

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


def stop_on_signals() -> None:
    """Raise :class:`Interrupted` in the main thread at the first SIGINT or SIGTERM; later ones are ignored,
    so that failing and settling the running trial is not itself cut short."""
    stopping = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stopping.is_set():
            return
        stopping.set()
        raise Interrupted(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


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


__all__ = ["PARENT_PID_VAR", "Interrupted", "exit_code", "signal_name", "stop_on_signals", "stop_with_parent"]
