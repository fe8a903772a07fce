"""Trial models through Optuna's artifact store: saved, found as the best, loaded back with weights only."""

from __future__ import annotations

import optuna
import pytest
import torch

from automl.storage.artifacts import artifact_store, best_checkpoint, checkpoint, load_model, save_trial_model
from automl.records import ATTR_MODEL, ATTR_WEIGHTS
from automl.testing import tiny_data, tiny_model


def test_the_best_completed_trial_with_a_model_is_the_one_loaded(tmp_path):
    store = artifact_store(tmp_path / "artifacts")
    study = optuna.create_study()
    data = tiny_data()
    assert best_checkpoint(study, store, tmp_path / "cache") is None
    models = {}
    for number, value in enumerate((0.3, 0.1, 0.2)):
        trial = study.ask()
        models[number] = tiny_model(data, seed=number)
        attrs = save_trial_model(trial, store, checkpoint(models[number], "small_cnn", {"width": 0.25}, 1,
                                                          data.num_classes))
        assert list(attrs) == [ATTR_MODEL]  # no extra weights, so no record of them
        for key, artifact in attrs.items():
            trial.set_user_attr(key, artifact)
        study.tell(trial, value)
    pruned = study.ask()
    pruned.set_user_attr(ATTR_MODEL, "not-a-real-artifact")
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)

    path = best_checkpoint(study, store, tmp_path / "cache")
    assert path.name == "best-trial-1.pt"
    loaded = load_model(path)
    for (name, a), b in zip(models[1].state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_anything_but_an_automl_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not an automl model checkpoint"):
        load_model(path)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": 1, "payload": object()}, pickled)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_model(pickled)


def test_a_trials_snapshots_are_stored_beside_its_model_and_rebuild_its_ensemble(write_study, sqlite_url, tmp_path):
    from optuna.artifacts import download_artifact

    from automl.cli import main
    from automl.train.datasets import load_dataset

    study_file = write_study("""
        [tricks]
        include = ["snapshot_ensemble"]
        [tricks.snapshot_ensemble]
        enabled = true
        cycles = 3
        k = 2
        alpha0 = 0.1
        """, n_trials=1, trial_budget="12steps")
    assert main(["run", str(study_file), "--storage", sqlite_url]) == 0
    (trial,) = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    stored = trial.user_attrs[ATTR_WEIGHTS]
    assert sorted(stored) == ["snapshot_ensemble.1", "snapshot_ensemble.2"]  # the k snapshots averaged
    store = artifact_store(tmp_path / "artifacts")
    snapshots = []
    for name in sorted(stored):
        path = tmp_path / f"{name}.pt"
        download_artifact(artifact_store=store, artifact_id=stored[name], file_path=str(path))
        snapshots.append(load_model(path).eval())
    # Averaging the stored snapshots' probabilities gives back the trial's ensemble error.
    data = load_dataset("synthetic", shape=(1, 8, 8), n_train=96, n_val=48, n_test=48, num_classes=4, seed=0)
    with torch.no_grad():
        probs = sum(model(data.val.x).softmax(dim=1) for model in snapshots) / len(snapshots)
    error = (probs.argmax(dim=1) != data.val.y).float().mean().item()
    assert error == pytest.approx(trial.value)
    last = tmp_path / "model.pt"
    download_artifact(artifact_store=store, artifact_id=trial.user_attrs[ATTR_MODEL], file_path=str(last))
    for a, b in zip(load_model(last).state_dict().values(), snapshots[-1].state_dict().values()):
        assert torch.equal(a, b)  # the last snapshot is the trained model at the end of the budget
