"""The adapter over Optuna's private API: a trial's attributes in one transaction, on every storage."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy as sa

from automl.storage import open_storage
from automl.storage.optuna_adapter import rdb_storage, set_user_attrs, study_engine, trial_id

ATTRS = {"tricks": ["a", "b"], "spent_seconds": 1.5, "end_reason": "complete", "steps": 6, "options": {"a": {"k": 1}}}


def _commits(engine: sa.Engine) -> list[int]:
    counted = [0]
    sa.event.listen(engine, "commit", lambda connection: counted.__setitem__(0, counted[0] + 1))
    return counted


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_trials_attributes_are_one_commit_and_read_back_as_optuna_wrote_them(backend, sqlite_url, request):
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(storage=open_storage(url), study_name="adapter")
    trial = study.ask()
    trial.set_user_attr("seed", 3)
    counted = _commits(study_engine(study))
    set_user_attrs(study, trial, {**ATTRS, "seed": 4})  # an existing key is overwritten, as set_user_attr does
    assert counted[0] == 1
    study.tell(trial, 0.25)
    (stored,) = optuna.load_study(study_name="adapter", storage=url).trials
    assert stored.user_attrs == {**ATTRS, "seed": 4}
    with pytest.raises(RuntimeError, match="finished"):  # Optuna's own refusal for a finished trial
        set_user_attrs(study, trial, {"late": 1})


def test_a_value_that_is_not_json_writes_none_of_the_attributes(sqlite_url):
    study = optuna.create_study(storage=open_storage(sqlite_url), study_name="adapter")
    trial = study.ask()
    with pytest.raises(TypeError):
        set_user_attrs(study, trial, {"fine": 1, "bad": object()})
    assert study.trials[0].user_attrs == {}


def test_the_in_memory_storage_takes_each_key_through_the_public_api():
    study = optuna.create_study()
    trial = study.ask()
    set_user_attrs(study, trial, ATTRS)
    assert study.trials[0].user_attrs == ATTRS
    assert rdb_storage(study) is study._storage
    assert study.trials[0]._trial_id == trial_id(trial)
