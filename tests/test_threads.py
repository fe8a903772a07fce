"""Threads that do not fight: each automl process sizes torch's pool to its share of the cores it may run on,
honours OMP_NUM_THREADS and --threads, and says when the machine is already busier than its cores."""

from __future__ import annotations

import os

import pytest
import torch

from automl.study.processes import threads_per_worker
from automl.threads import cores, overload_warning, threads_for


def test_cores_are_those_this_process_may_run_on():
    assert 1 <= cores() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("requested", "share", "environ", "expected"), [
    (3, 1, {"OMP_NUM_THREADS": "8"}, 3),       # --threads wins over the environment
    (None, 1, {"OMP_NUM_THREADS": "8"}, 8),
    (None, 4, {"OMP_NUM_THREADS": "8"}, 2),    # four processes split what one may use
    (None, 16, {"OMP_NUM_THREADS": "8"}, 1),   # never none
    (None, 1, {"OMP_NUM_THREADS": "zero"}, None),  # not a count: the cores, as if unset
    (None, 1, {"OMP_NUM_THREADS": "0"}, None),
    (None, 1, {}, None),
])
def test_threads_come_from_the_option_then_the_environment_then_the_cores(requested, share, environ, expected):
    assert threads_for(requested, share, environ) == (cores() if expected is None else expected)


def test_workers_split_the_parents_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert threads_per_worker(3) == 2 and threads_per_worker(4, requested=8) == 2 and threads_per_worker(9) == 1


def test_a_load_above_the_cores_is_said_with_what_it_means():
    assert overload_warning(load=1.5, available=2) is None
    warning = overload_warning(load=5.25, available=2)
    assert warning.startswith("the machine's load (5.2) already exceeds its 2 cores")
    assert "--threads" in warning and "OMP_WAIT_POLICY=passive" in warning and "budget in steps" in warning


def test_the_load_is_said_only_where_a_budget_reads_the_clock(monkeypatch, capsys):
    from automl.budget import Budget
    from automl.cli.options import warn_if_overloaded
    from tests.conftest import MACHINE_LOAD_WARNING

    monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 0.0, 0.0))  # far busier than any machine's cores
    warn_if_overloaded(torch.device("cpu"), [Budget.parse("6steps"), Budget.parse("2epochs")])
    assert capsys.readouterr().err == ""  # steps and epochs buy the same training however busy the machine is
    warn_if_overloaded(torch.device("cpu"), [Budget.parse("6steps"), Budget.parse("2s")])
    assert capsys.readouterr().err.startswith(MACHINE_LOAD_WARNING + " (1000.0)")


def test_run_sizes_torch_s_pool_from_the_option(run_cli, write_study, sqlite_url):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_cli("run", write_study(n_trials=1), "--storage", sqlite_url, "--threads", "1", "--device", "cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", ["run", "compare", "train"])
def test_threads_is_documented_in_the_help(command, capsys):
    from automl.cli import main

    try:
        main([command, "--help"])
    except SystemExit:
        pass
    out = " ".join(capsys.readouterr().out.split())
    assert "--threads N CPU threads torch may use (default: OMP_NUM_THREADS, else the cores" in out
