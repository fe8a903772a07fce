"""A study through the command line on an image folder of PNG files written by the test: run, trials, best,
export and train work on the result, and the study's source records where the data set came from."""

from __future__ import annotations

import json
import textwrap

import optuna
import pytest
import sqlalchemy as sa

from automl.storage.artifacts import load_model
from automl.train.datasets import load_dataset
from automl.train.image_files import write_image_folder

pytestmark = pytest.mark.usefixtures("one_thread")  # one thread: the same run gives the same bits

STUDY = """
[study]
name = "folder"
sampler = "random"
pruner = "none"
trial_budget = "6steps"
n_trials = 2
artifacts = "{artifacts}"

[task]
dataset = "imagefolder"
data_root = "{root}"
loader = "{loader}"
model = "small_cnn"
model_args = {{ width = 0.25 }}
dataset_args = {{ size = 8 }}

[train]
batch_size = 16
rungs = 2

[tricks]
include = ["label_smoothing"]
"""


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_a_study_on_an_image_folder_runs_and_its_best_trial_exports_and_trains(run_cli, tmp_path, sqlite_url,
                                                                                loader):
    root = write_image_folder(tmp_path / "images", classes=3, train=20, test=6, size=(10, 10))
    study = tmp_path / "folder.toml"
    study.write_text(textwrap.dedent(STUDY.format(artifacts=(tmp_path / "artifacts").as_posix(),
                                                  root=root.as_posix(), loader=loader)))
    run_cli("run", study, "--storage", sqlite_url)
    stored = optuna.load_study(study_name="folder", storage=sqlite_url)
    assert [t.state.name for t in stored.trials] == ["COMPLETE", "COMPLETE"]
    assert all(0 <= t.user_attrs["data_wait_fraction"] <= 1 for t in stored.trials)
    assert stored.user_attrs["data_load"]["loader"] == loader and stored.user_attrs["data_load"]["decode_seconds"] > 0

    _, printed, _ = run_cli("trials", "folder", "--storage", sqlite_url, "--json")
    assert all(r["data_wait_fraction"] is not None for r in json.loads(printed))
    _, shown, _ = run_cli("trials", "folder", "--storage", sqlite_url)
    assert "data wait" in shown
    if loader == "stream":  # the report once: its figures take a while
        report = tmp_path / "report.html"
        run_cli("report", "folder", "--storage", sqlite_url, "-o", report)
        assert "of a trial's training time (median" in report.read_text() and "stream loader" in report.read_text()
    _, best, _ = run_cli("best", "folder", "--storage", sqlite_url, "--json")
    assert json.loads(best)["number"] == stored.best_trial.number

    with sa.create_engine(sqlite_url).connect() as db:
        plugins = json.loads(db.execute(sa.text("SELECT plugins FROM automl_study_source")).scalar_one())
    assert {"dataset": "imagefolder", "plugin": "datasets", "source": "automl 0.1.0: automl_plugins.datasets"} in plugins

    out = tmp_path / "run.toml"
    run_cli("export", "folder", "--storage", sqlite_url, "-o", out)
    _, trained, _ = run_cli("train", out, "--json")
    result = json.loads(trained)["runs"][0]
    assert result["val_error"] == stored.best_value  # the trial again, to the bit

    # The saved model is the trained one: it scores the reported test error on the folder's test images.
    data = load_dataset("imagefolder", root=root, size=8)
    model = load_model(result["model"]).eval()
    wrong = (model(data.test.x).argmax(1) != data.test.y).float().mean().item()
    assert wrong == pytest.approx(result["test_error_model"])


def test_a_relative_data_root_is_read_from_the_study_files_folder_wherever_the_command_runs(
        run_cli, write_study, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    write_image_folder(folder / "my-images", classes=2, train=6, test=2, size=(8, 8))
    study = write_study(filename="project/images.toml", n_trials=1)
    study.write_text(study.read_text().replace('dataset = "synthetic"', 'dataset = "imagefolder"\ndata_root = "my-images"')
                     .replace("dataset_args = { shape = [1, 8, 8], n_train = 96, n_val = 48, n_test = 48, "
                              "num_classes = 4 }", ""))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the images are not here: only beside the study file
    url = f"sqlite:///{tmp_path / 'images.db'}"
    run_cli("run", study, "--storage", url)
    out = tmp_path / "run.toml"
    run_cli("export", "tiny", "--storage", url, "-o", out)
    assert f'data_root = "{(folder / "my-images").as_posix()}"' in out.read_text()
