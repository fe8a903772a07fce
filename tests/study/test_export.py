"""`automl export` and `automl train`: a finished study's trial trained again, with the same tricks and params."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import TrialState

from automl.storage.artifacts import load_model
from automl.train.datasets import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread: the same run gives the same bits

TRICKS = """
[tricks]
include = ["warmup", "cosine", "label_smoothing", "ema"]
[tricks.warmup]
enabled = true
fraction = { low = 0.1, high = 0.3 }
[tricks.label_smoothing]
enabled = true
"""
LR_RANGE = "lr = { low = 0.01, high = 0.3, log = true }"



def one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("automl: error: "), err
    return lines[0]


@pytest.fixture
def finished(run_cli, write_study, sqlite_url, tmp_path):
    """A tiny study of 3 completed trials (searched LR and tricks), its file deleted afterwards."""
    path = write_study(TRICKS)
    path.write_text(path.read_text().replace("lr = 0.05", LR_RANGE))
    code, _, err = run_cli("run", str(path), "--storage", sqlite_url)
    assert code == 0, err
    path.unlink()  # the export must work from the text stored with the study
    return optuna.load_study(study_name="tiny", storage=sqlite_url)


def test_export_the_best_trial_and_train_it_with_the_same_tricks_and_params(run_cli, finished, sqlite_url, tmp_path):
    best = finished.best_trial
    out = tmp_path / "run.toml"
    code, printed, err = run_cli("export", "tiny", "--storage", sqlite_url, "-o", str(out), "--json")
    assert code == 0, err
    assert json.loads(printed)["trial"] == best.number

    exported = tomllib.loads(out.read_text())
    assert exported["params"] == best.params
    assert exported["run"] == {"budget": "6steps", "seed": best.user_attrs["seed"], "data_seed": 0,
                               "tricks": best.user_attrs["tricks"]}
    assert exported["source"]["study"] == "tiny" and exported["source"]["value"] == best.value
    assert exported["train"]["lr"] == {"low": 0.01, "high": 0.3, "log": True}  # the range, the value in [params]
    assert exported["tricks"]["include"] == ["cosine", "ema", "label_smoothing", "warmup"]
    assert exported["tricks"]["warmup"] == {"enabled": True, "fraction": {"low": 0.1, "high": 0.3}}

    code, printed, err = run_cli("train", str(out), "--seeds", "2", "--json")
    assert code == 0, err
    result = json.loads(printed)
    seed = best.user_attrs["seed"]
    assert [r["seed"] for r in result["runs"]] == [seed, seed + 1]
    for run in result["runs"]:
        # What each run was built from, and the built tricks' own attributes, are the trial's.
        assert run["tricks"] == best.user_attrs["tricks"]
        assert run["params"] == best.params
        for trick in run["tricks"]:
            for name, value in run["trick_args"][trick].items():
                if f"{trick}.{name}" in best.params:
                    assert value == best.params[f"{trick}.{name}"]
        assert {"warmup", "label_smoothing"} <= set(run["trick_args"])
        assert run["steps"] == 6
        assert 0 <= run["test_error"] <= 1
    assert result["train"]["lr"] == best.params["train.lr"]
    # The trial's own seed and step budget on the same device repeat the trial to the bit: the same
    # validation error, and the same weights as the model the study kept.
    assert result["runs"][0]["val_error"] == best.value
    kept = tmp_path / "kept.pt"
    download_artifact(artifact_store=FileSystemArtifactStore(str(tmp_path / "artifacts")),
                      artifact_id=best.user_attrs["model_artifact"], file_path=str(kept))
    trial_weights = torch.load(kept, weights_only=True)["state_dict"]
    run_weights = torch.load(result["runs"][0]["model"], weights_only=True)["state_dict"]
    assert trial_weights.keys() == run_weights.keys()
    assert all(torch.equal(trial_weights[k], run_weights[k]) for k in trial_weights)
    errors = [r["test_error"] for r in result["runs"]]
    assert result["test_error"]["mean"] == pytest.approx(sum(errors) / 2)
    assert result["test_error"]["std"] == pytest.approx(abs(errors[0] - errors[1]) / 2 ** 0.5)

    # Each saved model is the trained one: loaded with weights_only, it scores the reported test error.
    data = load_dataset("synthetic", seed=0, shape=(1, 8, 8), n_train=96, n_val=48, n_test=48, num_classes=4)
    for run in result["runs"]:
        assert Path(run["model"]) == tmp_path / f"run-seed{run['seed']}.pt"
        model = load_model(run["model"]).eval()
        wrong = (model(data.test.x).argmax(1) != data.test.y).float().mean().item()
        assert wrong == pytest.approx(run["test_error_model"])


def test_budget_and_output_folder_on_the_command_line(run_cli, finished, sqlite_url, tmp_path):
    out = tmp_path / "run.toml"
    assert run_cli("export", "tiny", "--trial", "1", "--storage", sqlite_url, "-o", str(out))[0] == 0
    code, printed, err = run_cli("train", str(out), "--budget", "4steps", "-o", str(tmp_path / "models"))
    assert code == 0, err
    assert "mean" in printed and "test error" in printed
    assert (tmp_path / "models" / f"run-seed{finished.trials[1].user_attrs['seed']}.pt").is_file()


def test_only_a_completed_trial_can_be_exported(run_cli, finished, sqlite_url, tmp_path):
    pruned, failed = finished.ask(), finished.ask()
    finished.tell(pruned, state=TrialState.PRUNED)
    finished.tell(failed, state=TrialState.FAIL)
    out = tmp_path / "run.toml"
    for number, expected in ((pruned.number, "is PRUNED"), (failed.number, "is FAIL"), (99, "has no trial 99")):
        code, _, err = run_cli("export", "tiny", "--trial", str(number), "--storage", sqlite_url,
                               "-o", str(out), expect=2)
        line = one_line_error(code, err)
        assert expected in line and "completed trials: 0, 1, 2" in line
        assert not out.exists()


@pytest.fixture
def exported(run_cli, finished, sqlite_url, tmp_path) -> Path:
    out = tmp_path / "run.toml"
    assert run_cli("export", "tiny", "--storage", sqlite_url, "-o", str(out))[0] == 0
    return out


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: t.replace("[run]", "[run"), "malformed TOML"),
    (lambda t: t.replace("[run]\n", "[run]\nbudgt = 3\n"), "[run] unknown key 'budgt'; valid: budget, seed"),
    (lambda t: t.replace('budget = "6steps"', 'budget = "6 parsecs"'), "unknown unit 'parsecs'"),
    (lambda t: t.replace('"train.lr" =', '"train.rate" ='),
     "no value for param 'train.lr'"),
    (lambda t: t.replace("[params]\n", '[params]\n"warmup.speed" = 2\n'), "'warmup.speed' are not asked for"),
    (lambda t: t.replace('"warmup",\n]', '"warmup",\n    "gone",\n]'),
     "trick 'gone' is not installed"),
    (lambda t: t.replace("[run]\n", '[run]\nstudy_best = "nowhere.pt"\n'), "no file"),
    # A value the trick's own check refuses (not the distribution's): one line naming the param, not a traceback.
    (lambda t: re.sub(r'"label_smoothing.epsilon" = [^\n]+', '"label_smoothing.epsilon" = 7.5', t),
     "[params] trick 'label_smoothing' refuses label_smoothing.epsilon = 7.5: "),
])
def test_a_bad_run_file_is_one_line_and_trains_nothing(run_cli, exported, edit, expected):
    exported.write_text(edit(exported.read_text()))
    code, _, err = run_cli("train", str(exported), expect=2)
    assert expected in one_line_error(code, err)
    assert not list(exported.parent.glob("run-seed*.pt"))


def test_tricks_that_no_longer_follow_from_the_params_are_refused(run_cli, exported):
    exported.write_text(exported.read_text().replace("tricks = [\n", 'tricks = [\n    "cosine_in_name_only",\n', 1))
    code, _, err = run_cli("train", str(exported), expect=2)
    assert "but the params enable" in one_line_error(code, err)


def test_a_study_file_given_to_train_says_which_command(run_cli, write_study):
    code, _, err = run_cli("train", str(write_study()), expect=2)
    assert "is a study file, not a run file" in one_line_error(code, err)


def test_the_trial_is_rebuilt_from_the_text_and_variant_it_ran_with(run_cli, write_study, sqlite_url, tmp_path):
    path = write_study("""
        [variants.wide]
        task = { model_args = { width = 0.5 } }
        """, n_trials=1)
    assert run_cli("run", str(path), "--variant", "wide", "--storage", sqlite_url)[0] == 0
    path.write_text(path.read_text().replace("lr = 0.05", "lr = 0.1").replace("n_trials = 1", "n_trials = 2"))
    assert run_cli("run", str(path), "--variant", "wide", "--storage", sqlite_url)[0] == 0
    study = optuna.load_study(study_name="tiny-wide", storage=sqlite_url)
    for number, lr in ((0, 0.05), (1, 0.1)):
        out = tmp_path / f"run{number}.toml"
        code, _, err = run_cli("export", "tiny-wide", "--trial", str(number), "--storage", sqlite_url,
                               "-o", str(out))
        assert code == 0, err
        exported = tomllib.loads(out.read_text())
        assert exported["task"]["model_args"] == {"width": 0.5}
        assert exported["train"]["lr"] == lr
        code, printed, err = run_cli("train", str(out), "--json")
        assert code == 0, err
        assert json.loads(printed)["runs"][0]["val_error"] == study.trials[number].value
    # Trials recorded before the config's digest was: the text stored by the trial's start is the one.
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM trial_user_attributes WHERE key = 'config_sha256'"))
    engine.dispose()
    for number, lr in ((0, 0.05), (1, 0.1)):
        out = tmp_path / f"old{number}.toml"
        assert run_cli("export", "tiny-wide", "--trial", str(number), "--storage", sqlite_url,
                       "-o", str(out))[0] == 0
        assert tomllib.loads(out.read_text())["train"]["lr"] == lr


def test_a_trick_that_used_the_study_gets_the_same_context(run_cli, write_study, sqlite_url, tmp_path):
    """Distillation from the study's best model: trial 1 was taught by trial 0, and so is its export."""
    path = write_study("""
        [tricks]
        include = ["distillation"]
        [tricks.distillation]
        enabled = true
        """, n_trials=2)
    assert run_cli("run", str(path), "--storage", sqlite_url)[0] == 0
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert study.trials[0].user_attrs["tricks"] == [] and study.trials[1].user_attrs["tricks"] == ["distillation"]
    out = tmp_path / "run.toml"
    code, _, err = run_cli("export", "tiny", "--trial", "1", "--storage", sqlite_url, "-o", str(out))
    assert code == 0, err
    assert tomllib.loads(out.read_text())["run"]["study_best"] == "run.study-best.pt"
    code, printed, err = run_cli("train", str(out), "--json")
    assert code == 0, err
    run = json.loads(printed)["runs"][0]
    assert run["tricks"] == ["distillation"] and run["attrs"]["distillation.teacher"] == "run.study-best.pt"
    assert run["val_error"] == study.trials[1].value
