"""How many CPU threads torch may use in this process: its share of the cores it can see, so that several
automl processes on one machine do not make their thread pools fight."""

from __future__ import annotations

import os
from typing import Mapping

THREADS_ENV = "OMP_NUM_THREADS"
"""Honoured as the threads of one process when ``--threads`` is not given, as torch and OpenMP honour it."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def threads_for(requested: int | None = None, share: int = 1, environ: Mapping[str, str] | None = None) -> int:
    """The threads of one of ``share`` processes that split this machine: ``requested`` (``--threads``) as it is,
    else ``OMP_NUM_THREADS`` or the cores this process sees, split ``share`` ways, at least one each."""
    if requested:
        return requested
    environ = os.environ if environ is None else environ
    text = environ.get(THREADS_ENV, "").strip()
    total = int(text) if text.isdigit() and int(text) > 0 else cores()
    return max(1, total // share)


def use_threads(requested: int | None = None, share: int = 1) -> int:
    """Size torch's thread pool for this process (see :func:`threads_for`) and return the count."""
    import torch

    threads = threads_for(requested, share)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def overload_warning(load: float | None = None, available: int | None = None) -> str | None:
    """Why a budget in seconds will buy fewer steps than on a quiet machine, when the load average over the last
    minute (``os.getloadavg``) already exceeds the cores this process sees; else None."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform
            return None
    available = cores() if available is None else available
    if load <= available:
        return None
    return (f"the machine's load ({load:.1f}) already exceeds its {available} cores. A budget in seconds counts "
            "this process's CPU time, which buys the same steps as on a quiet machine only where torch's threads "
            "do not spin waiting for each other: give each process its share with --threads, or set "
            "OMP_WAIT_POLICY=passive; for exact comparisons use a budget in steps")
