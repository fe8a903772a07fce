"""Shared fixtures of the study tests: a tiny study with two arms and a probe trick (`automl compare` and its report),
and a tiny study whose trials last long enough to be caught running (faults, signals, the cluster templates)."""

from __future__ import annotations

import pytest

from automl.cli import main

from tests.study.two_arms import PROBE, TWO_ARMS


@pytest.fixture
def compare(write_study, sqlite_url, tmp_path, capsys):
    """Runs `automl compare` on the tiny study with two arms (cosine on or off); (exit code, stdout, stderr)."""
    plugin = tmp_path / "probe.py"
    plugin.write_text(PROBE)
    study = write_study(TWO_ARMS)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["compare", str(study), "--storage", sqlite_url, "--plugin", str(plugin), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def study_file(write_study):
    """Two trials of 2 s of device time (long enough to be caught running), 1 s heartbeats, 2 s grace."""
    path = write_study(n_trials=2, trial_budget="2s")
    text = path.read_text().replace("seed = 0", "seed = 0\nheartbeat_interval = 1\ngrace_period = 2")
    path.write_text(text.replace("lr = 0.05\n", "lr = { low = 0.01, high = 0.5, log = true }\n"))
    return path


