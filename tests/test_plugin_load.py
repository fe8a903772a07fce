"""Loading plugins from the command line: paths that are missing, clashing or failing, and what is said."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

BROKEN = """
def helper():
    raise KeyError("buried deep")

helper()
"""


def _write(tmp_path: Path, stem: str, body: str) -> Path:
    path = tmp_path / f"{stem}.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_missing_plugin_path_is_exit_2_before_anything_runs(run_cli, tmp_path, write_study, sqlite_url):
    study = write_study()
    code, out, err = run_cli("run", study, "--storage", sqlite_url, "--plugin", tmp_path / "nope.py", expect=2)
    assert err == f"automl: error: plugin {str(tmp_path / 'nope.py')!r} does not exist; give a plugin's .py file " \
                  "or package folder\n"
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_traceback_of_a_failing_plugin_is_shown_on_request(run_cli, tmp_path, monkeypatch):
    path = _write(tmp_path, "broken_deep", BROKEN)
    _, _, err = run_cli("plugins", "list", "--plugin", path)
    assert "plugin 'broken_deep'" in err and "KeyError: 'buried deep'" in err and "Traceback" not in err
    _, _, err = run_cli("plugins", "list", "--plugin", path, "--traceback")
    assert "Traceback (most recent call last)" in err and "in helper" in err
    monkeypatch.setenv("AUTOML_TRACEBACK", "1")
    _, _, err = run_cli("plugins", "list", "--plugin", path)
    assert "Traceback (most recent call last)" in err and "in helper" in err


def test_a_near_miss_of_a_hook_is_warned_about_and_listed(run_cli, tmp_path):
    path = _write(tmp_path, "near_hook", """
        from automl import Trick, hookimpl

        class Late(Trick):
            name = "late"

            def on_step_ends(self, run, loss):
                pass

        @hookimpl
        def automl_register_tricks():
            return [Late]
        """)
    _, out, err = run_cli("plugins", "list", "--plugin", path, "--json")
    warning = "trick 'late': Late.on_step_ends is not a hook, so the trainer never calls it; did you mean on_step_end?"
    assert f"automl: warning: {warning}\n" in err
    listed = json.loads(out)
    assert listed["warnings"] == [warning] and listed["blocked"] == {}


def test_an_explicit_plugin_providing_an_installed_trick_is_an_error(run_cli, tmp_path):
    path = _write(tmp_path, "my_schedules", """
        from automl import Trick, hookimpl

        class Cosine(Trick):
            name = "cosine"

        @hookimpl
        def automl_register_tricks():
            return [Cosine]
        """)
    _, out, err = run_cli("plugins", "list", "--plugin", path, expect=2)
    assert out == "" and err.count("\n") == 1
    assert f"trick 'cosine' is provided twice: by automl " in err and f"and by {path}; rename one" in err


def test_a_study_using_an_invalid_trick_is_exit_2_with_the_reason(run_cli, tmp_path, write_study, sqlite_url):
    path = _write(tmp_path, "typo_owns", """
        from automl import Trick, hookimpl

        class Sched(Trick):
            name = "sched"
            owns = ("lr_shedule",)

        @hookimpl
        def automl_register_tricks():
            return [Sched]
        """)
    study = write_study('[tricks]\ninclude = ["sched"]\n')
    _, _, err = run_cli("run", study, "--storage", sqlite_url, "--plugin", path, expect=2)
    assert "automl: warning: plugin 'typo_owns'" in err
    assert ("automl: error: " + str(study) + ": [tricks] trick 'sched' cannot be used: its plugin 'typo_owns'") in err
    assert "Sched.owns names 'lr_shedule', which is not a resource (did you mean 'lr_schedule'?)" in err.splitlines()[-1]
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_order_is_shown_by_plugins_show_and_list(run_cli):
    _, out, _ = run_cli("plugins", "show", "mixup")
    assert "order: -10 (hooks run lowest first, then by name)\n" in out
    _, out, _ = run_cli("plugins", "list", "--json")
    orders = {t["name"]: t["order"] for t in json.loads(out)["tricks"]}
    assert orders["mixup"] == -10 and orders["distillation"] == 10 and orders["warmup"] == 0
    assert json.loads(run_cli("plugins", "show", "warmup", "--json")[1])["declares"] == []


@pytest.mark.parametrize("command", ["run", "confirm"])
def test_the_commands_that_train_show_a_failing_plugins_traceback_on_request(command, run_cli, tmp_path, write_study,
                                                                             sqlite_url):
    path = _write(tmp_path, "broken_deep", BROKEN)
    study = write_study(n_trials=1)
    expect = 0 if command == "run" else 2  # confirm: the study has no database yet, said after the plugins load
    _, _, err = run_cli(command, study, "--storage", sqlite_url, "--plugin", path, "--traceback", expect=expect)
    assert "plugin 'broken_deep'" in err and "Traceback (most recent call last)" in err and "in helper" in err
