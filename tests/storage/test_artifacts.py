"""Trial models through Optuna's artifact store: saved, found as the best, loaded back with weights only."""

from __future__ import annotations

import optuna
import pytest
import torch

from automl.storage.artifacts import (ATTR_MODEL, artifact_store, best_checkpoint, checkpoint, load_model,
                                      save_trial_model)
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
        save_trial_model(trial, store, checkpoint(models[number], "small_cnn", {"width": 0.25}, 1, data.num_classes))
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
