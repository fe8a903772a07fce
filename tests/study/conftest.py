"""Shared by the tests of `automl compare` and its report: a tiny study with two arms and a probe trick."""

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


