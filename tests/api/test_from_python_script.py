"""The notebook-style script in studies/ runs as README says (issue 27, item 5)."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_the_from_python_script_runs_a_study_and_a_recipe_in_its_own_loop(tmp_path, child_env):
    url = f"sqlite:///{tmp_path / 'from_python.db'}"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "studies" / "from_python.py")], cwd=tmp_path,
                          env={**child_env(), "AUTOML_STORAGE": url}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "your loop: validation error" in done.stdout and "after 60 steps" in done.stdout
    assert done.stderr == ""  # nothing printed unless asked: no Optuna log lines, no warnings
    assert len(optuna.load_study(study_name="from-python", storage=url).trials) == 6
    assert (tmp_path / "from-python-best.toml").is_file()
