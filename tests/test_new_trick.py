"""`automl new-trick`: the plugin it writes passes its own test, loads by path or as an installed package,
and a study runs with it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import pyflakes.api
import pyflakes.reporter
import pytest


@pytest.fixture
def generated(run_cli, tmp_path) -> Path:
    code, out, err = run_cli("new-trick", "input_noise", "--dir", str(tmp_path / "mine"), "--json")
    assert code == 0, err
    written = json.loads(out)
    assert written["module"] == str(tmp_path / "mine" / "input_noise.py")
    assert written["entry_point"] == '[project.entry-points.automl]\ninput_noise = "your_package.input_noise"'
    return Path(written["module"])


def test_the_generated_files_are_lint_clean(generated):
    for path in (generated, generated.with_name("test_input_noise.py")):
        report = io.StringIO()
        assert pyflakes.api.check(path.read_text(), str(path), pyflakes.reporter.Reporter(report, report)) == 0, \
            report.getvalue()


def test_the_generated_plugin_passes_its_own_test_which_fails_without_the_effect(run_cli, generated, tmp_path, child_env):
    # A second trick whose hook lost its effect: its generated test must notice, in training too.
    code, _, err = run_cli("new-trick", "lost_noise", "--dir", str(tmp_path / "lost"))
    assert code == 0, err
    lost = tmp_path / "lost" / "lost_noise.py"
    effect = "        return add_noise(x, self.sigma), y\n"
    assert effect in lost.read_text()
    lost.write_text(lost.read_text().replace(effect, "        return x, y\n"))
    report = tmp_path / "report.xml"
    # One interpreter for both test files, to import torch once.
    tests = [str(generated.with_name("test_input_noise.py")), str(lost.with_name("test_lost_noise.py"))]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                             *tests], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300)
    outcomes: dict[str, dict[str, bool]] = {}
    for case in ET.parse(report).iter("testcase"):
        passed = case.find("failure") is None and case.find("error") is None and case.find("skipped") is None
        outcomes.setdefault(case.get("classname").rsplit(".", 1)[-1], {})[case.get("name")] = passed
    good, bad = outcomes["test_input_noise"], outcomes["test_lost_noise"]
    assert len(good) == 5 and all(good.values()), result.stdout + result.stderr
    assert sorted(name for name, passed in bad.items() if not passed) == [
        "test_a_tiny_model_trains_on_noisy_batches", "test_training_batches_get_noise_and_keep_their_labels"]
    assert bad.keys() == good.keys() and result.returncode == 1


def test_a_study_runs_with_the_generated_trick_loaded_by_path(run_cli, generated, write_study, sqlite_url):
    code, out, _ = run_cli("plugins", "show", "input_noise", "--plugin", str(generated), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["params"]["sigma"]["text"] == "[0.01, 0.3] log" and shown["source"] == str(generated)
    assert shown["hooks"] == ["transform_batch"] and shown["owns"] == [] and shown["options"] == {}

    study = write_study("""
        [tricks]
        include = ["input_noise"]
        [tricks.input_noise]
        enabled = true
        """, n_trials=2)
    code, _, err = run_cli("run", str(study), "--storage", sqlite_url, "--plugin", str(generated))
    assert code == 0, err
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        assert trial.user_attrs["tricks"] == ["input_noise"]
        assert 0.01 <= trial.params["input_noise.sigma"] <= 0.3


def test_plugins_show_lists_the_hooks_the_trainer_will_call(run_cli, generated):
    # A misspelt hook is an ordinary method the trainer never calls: show makes that visible.
    generated.write_text(generated.read_text().replace("def transform_batch(", "def transform_batches("))
    code, out, err = run_cli("plugins", "show", "input_noise", "--plugin", str(generated))
    assert code == 0, err
    assert "hooks: -\n" in out and "input_noise.sigma  [0.01, 0.3] log" in out
    code, out, _ = run_cli("plugins", "list", "--plugin", str(generated), "--json")
    hooks = {t["name"]: t["hooks"] for t in json.loads(out)["tricks"]}
    assert hooks["input_noise"] == [] and hooks["warmup"] == ["lr_factor"]
    assert hooks["swa"] == ["setup", "on_end", "on_step_end", "predict"]


@pytest.mark.slow
def test_the_generated_trick_installed_as_a_package_is_found_through_its_entry_point(generated, tmp_path, child_env):
    package = tmp_path / "pkg"
    (package / "noise_tricks").mkdir(parents=True)
    (package / "noise_tricks" / "__init__.py").write_text("")
    (package / "noise_tricks" / "input_noise.py").write_text(generated.read_text())
    snippet = json.loads(subprocess.run(
        [sys.executable, "-m", "automl", "new-trick", "input_noise", "--dir", str(tmp_path / "again"), "--json"],
        env=child_env(), capture_output=True, text=True, check=True).stdout)["entry_point"]
    (package / "pyproject.toml").write_text(
        '[project]\nname = "noise-tricks"\nversion = "0.1"\n\n'
        + snippet.replace("your_package", "noise_tricks") + "\n")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True, capture_output=True, timeout=300)
    listed = subprocess.run([sys.executable, "-m", "automl", "plugins", "list", "--json"], env=child_env(site),
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    found = {t["name"]: t for t in json.loads(listed.stdout)["tricks"]}
    assert found["input_noise"]["source"].startswith("noise-tricks 0.1")
    assert "cosine" in found  # beside the built-in tricks


@pytest.mark.parametrize(("argv", "message"), [
    (["Input-Noise"], "trick name 'Input-Noise' must be a snake_case Python identifier"),
    (["class"], "trick name 'class' must be a snake_case Python identifier"),
    (["warmup"], "a trick named 'warmup' is already installed"),
    # The host refuses these names for a trick, so the plugin would never load.
    (["train"], "trick name 'train' is reserved: a study names its own parameters train.*"),
    (["owner"], "trick name 'owner' is reserved"),
    # The generated test imports the module by name: json.py or optuna.py would hide the real one.
    (["json"], "trick name 'json' is also the module json (standard library), which json.py would hide"),
    (["optuna"], f"trick name 'optuna' is also the module optuna ({optuna.__file__})"),
])
def test_bad_names_are_one_line_and_write_nothing(run_cli, tmp_path, argv, message):
    code, out, err = run_cli("new-trick", *argv, "--dir", str(tmp_path), expect=2)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_a_dir_that_is_a_file_is_one_line_and_writes_nothing(run_cli, tmp_path):
    (tmp_path / "taken").write_text("")
    code, out, err = run_cli("new-trick", "input_noise", "--dir", str(tmp_path / "taken"), expect=2)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"cannot write the trick into {str(tmp_path / 'taken')!r}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_existing_files_are_kept_unless_forced(run_cli, generated):
    generated.write_text("# my edits\n")
    code, _, err = run_cli("new-trick", "input_noise", "--dir", str(generated.parent), expect=2)
    assert code == 2 and err.count("\n") == 1
    assert "already exist; pass --force to overwrite" in err and generated.read_text() == "# my edits\n"
    assert run_cli("new-trick", "input_noise", "--dir", str(generated.parent), "--force")[0] == 0
    assert "class InputNoise(Trick)" in generated.read_text()
    assert sorted(p.name for p in generated.parent.iterdir()) == ["input_noise.py", "test_input_noise.py"]
