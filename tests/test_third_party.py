"""A third-party package of tricks (tests/third_party/my-tricks: its own pyproject.toml, cutout, exp_decay,
gradient clipping through after_backward, a `cosine`, and a model `my_net`), installed by entry point: its tests
pass, its tricks and its model run in a study, and a trick name it shares with a built-in blocks only the studies
that use that name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import optuna
import pytest

PACKAGE = Path(__file__).parent / "third_party" / "my-tricks"
TRICKS = {"cutout", "exp_decay", "my_clip", "cosine"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """my-tricks installed by pip into a folder of its own, as a user's environment would hold it."""
    root = tmp_path_factory.mktemp("third_party")
    source = shutil.copytree(PACKAGE, root / "my-tricks")  # pip builds in place: keep the checkout clean
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    return target


def _builtins() -> set[str]:
    """The tricks automl itself ships (cutout and exp_decay among them once they are built in)."""
    return {ep.name for ep in distribution("automl").entry_points if ep.group == "automl"}


def _automl(child_env, site, *argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "automl", *map(str, argv)], env=child_env(site), cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_its_own_tests_pass_against_it_installed(site, child_env, tmp_path):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(PACKAGE / "tests" / "test_my_tricks.py")], cwd=tmp_path, env=child_env(site),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


@pytest.mark.slow
def test_its_tricks_are_found_and_a_shared_name_is_blocked_naming_both(site, child_env):
    listed = _automl(child_env, site, "plugins", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    tricks = {t["name"]: t for t in found["tricks"]}
    clashing = TRICKS & _builtins()
    assert {"cosine", "cutout", "exp_decay"} <= clashing  # the last two share names with built-ins since they landed
    for name in TRICKS - clashing:
        assert tricks[name]["source"] == f"my-tricks 0.1: my_tricks.{name}"
    assert tricks["my_clip"]["hooks"] == ["after_backward"]
    assert sorted(found["blocked"]) == sorted(clashing) and not clashing & set(tricks)
    for name in clashing:
        assert f"by automl 0.1.0: automl_plugins.{name} and by my-tricks 0.1: my_tricks.{name}" in found["blocked"][name]
        assert f"AUTOML_DISABLE_PLUGINS=automl_plugins.{name} or my_tricks.{name}" in found["blocked"][name]
        assert f"automl: warning: trick {name!r} is provided twice" in listed.stderr
    assert {"warmup", "label_smoothing"} <= set(tricks)  # the built-ins that clash with nothing are there
    models = {m["name"]: m for m in found["models"]}
    assert models["my_net"]["source"] == "my-tricks 0.1: my_tricks.my_net"
    assert models["my_net"]["options"] == {"hidden": 8} and "resnet20" in models


@pytest.mark.slow
def test_its_model_trains_in_a_study_and_its_export_trains_again(site, child_env, write_study, tmp_path):
    study = write_study('[tricks]\ninclude = ["warmup"]\n', n_trials=1)
    text = study.read_text().replace('model = "small_cnn"', 'model = "my_net"')
    study.write_text(text.replace("model_args = { width = 0.25 }", "model_args = { hidden = 6 }"))
    url = f"sqlite:///{tmp_path / 'net.db'}"
    ran = _automl(child_env, site, "run", study, "--storage", url)
    assert ran.returncode == 0, ran.stderr
    stored = optuna.load_study(study_name="tiny", storage=url)
    assert stored.trials[0].state.name == "COMPLETE"
    assert stored.user_attrs["plugins"]["model:my_net"] == "my-tricks 0.1: my_tricks.my_net"
    run_file = tmp_path / "run.toml"
    assert _automl(child_env, site, "export", "tiny", "--storage", url, "-o", run_file).returncode == 0
    trained = _automl(child_env, site, "train", run_file, "--out", tmp_path / "models")
    assert trained.returncode == 0, trained.stderr
    load = ("import sys; from automl.storage.artifacts import load_model; "
            "print(load_model(sys.argv[1])[0].out_channels)")
    shown = subprocess.run([sys.executable, "-c", load, str(next((tmp_path / "models").glob("*.pt")))],
                           env=child_env(site), capture_output=True, text=True, timeout=300)
    assert shown.stdout.strip() == "6", shown.stderr


@pytest.mark.slow
def test_a_study_of_its_other_tricks_runs_and_one_using_the_shared_name_stops(site, child_env, write_study, tmp_path):
    usable = sorted(TRICKS - _builtins())
    assert "my_clip" in usable
    study = write_study(f'[tricks]\ninclude = {json.dumps(usable)}\n[tricks.my_clip]\nenabled = true\n', n_trials=2)
    url = f"sqlite:///{tmp_path / 'third.db'}"
    ran = _automl(child_env, site, "run", study, "--storage", url, "--json")
    assert ran.returncode == 0, ran.stderr
    stored = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state.name for t in stored.trials] == ["COMPLETE", "COMPLETE"]
    assert all("my_clip" in t.user_attrs["tricks"] for t in stored.trials)
    assert stored.user_attrs["plugins"]["my_clip"] == "my-tricks 0.1: my_tricks.my_clip"

    clash = write_study('[tricks]\ninclude = ["cosine", "my_clip"]\n', name="clash", filename="clash.toml")
    stopped = _automl(child_env, site, "run", clash, "--storage", url)
    assert stopped.returncode == 2 and stopped.stdout == ""
    error = stopped.stderr.splitlines()[-1]
    assert error.startswith(f"automl: error: {clash}: [tricks] trick 'cosine' cannot be used: trick 'cosine' is "
                            "provided twice: by automl 0.1.0: automl_plugins.cosine and by my-tricks 0.1: my_tricks.cosine")
    assert "clash" not in {s.study_name for s in optuna.get_all_study_summaries(url)}
    # Saying which one is meant is enough.
    chosen = _automl(child_env, site, "plugins", "show", "cosine", "--json")
    assert chosen.returncode == 2
    env = dict(child_env(site), AUTOML_DISABLE_PLUGINS="automl_plugins.cosine")
    shown = subprocess.run([sys.executable, "-m", "automl", "plugins", "show", "cosine", "--json"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and json.loads(shown.stdout)["source"] == "my-tricks 0.1: my_tricks.cosine"


# --------------------------------------------------------------------------- a data set from the same package


@pytest.mark.slow
def test_its_data_set_is_listed_and_a_study_trains_on_it(site, child_env, write_study, tmp_path):
    listed = json.loads(_automl(child_env, site, "plugins", "list", "--json").stdout)
    datasets = {d["name"]: d for d in listed["datasets"]}
    assert datasets["halves"]["source"] == "my-tricks 0.1: my_tricks.my_data"
    assert datasets["halves"]["options"] == {"n": 64}
    assert {"digits", "imagefolder"} <= set(datasets)  # the built-ins beside it

    study = write_study('[tricks]\ninclude = ["warmup"]\n', n_trials=1)
    study.write_text(study.read_text().replace('dataset = "synthetic"', 'dataset = "halves"').replace(
        "dataset_args = { shape = [1, 8, 8], n_train = 96, n_val = 48, n_test = 48, num_classes = 4 }",
        "dataset_args = { n = 80 }"))
    url = f"sqlite:///{tmp_path / 'halves.db'}"
    ran = _automl(child_env, site, "run", study, "--storage", url)
    assert ran.returncode == 0, ran.stderr
    stored = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state.name for t in stored.trials] == ["COMPLETE"] and stored.user_attrs["dataset"] == "halves"
    assert stored.trials[0].user_attrs["val_size"] == 8  # a tenth of the 80 images
