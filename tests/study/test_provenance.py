"""Where a study's tricks came from: a resume with a trick from another plugin or version stops, unless accepted."""

from __future__ import annotations

import optuna

from automl import records

SHIFT = """
from automl import Trick, hookimpl

class Shift(Trick):
    name = "shift"

    @classmethod
    def search_space(cls, trial):
        return {{"by": trial.suggest_float("by", {low}, {high})}}

    def __init__(self, by=0.0):
        self.by = by

    def transform_batch(self, run, x, y):
        return x + self.by, y

@hookimpl
def automl_register_tricks():
    return [Shift]
"""


def test_a_resume_with_a_trick_from_another_plugin_stops_naming_both_unless_accepted(run_cli, tmp_path, write_study,
                                                                                     sqlite_url):
    first, second = tmp_path / "v1" / "shift.py", tmp_path / "v2" / "shift.py"
    for path, (low, high) in ((first, (0.0, 0.1)), (second, (1.0, 2.0))):
        path.parent.mkdir()
        path.write_text(SHIFT.format(low=low, high=high))
    study = write_study('[tricks]\ninclude = ["shift"]\n', n_trials=1)
    run_cli("run", study, "--storage", sqlite_url, "--plugin", first)
    stored = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert stored.user_attrs[records.STUDY_PLUGINS]["shift"] == str(first)

    _, _, err = run_cli("run", study, "--storage", sqlite_url, "--n-trials", "2", "--plugin", second, expect=2)
    assert err == (f"automl: error: study 'tiny' ran trick 'shift' from {first}, but it now comes from {second}: the "
                   "same parameters may mean another thing; install the plugin it ran with, or pass "
                   "--accept-plugin-change to go on with the new one\n")
    assert len(optuna.load_study(study_name="tiny", storage=sqlite_url).trials) == 1  # nothing ran

    run_cli("run", study, "--storage", sqlite_url, "--n-trials", "2", "--plugin", second, "--accept-plugin-change")
    stored = optuna.load_study(study_name="tiny", storage=sqlite_url)
    assert len(stored.trials) == 2 and stored.user_attrs[records.STUDY_PLUGINS]["shift"] == str(second)
    # Accepted once, the new source is the study's: the next resume needs no flag, the old one does.
    run_cli("run", study, "--storage", sqlite_url, "--n-trials", "3", "--plugin", second)
    run_cli("run", study, "--storage", sqlite_url, "--n-trials", "4", "--plugin", first, expect=2)


def test_a_study_from_before_the_record_is_checked_against_its_source_rows(run_cli, tmp_path, write_study, sqlite_url):
    first, second = tmp_path / "v1" / "shift.py", tmp_path / "v2" / "shift.py"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text(SHIFT.format(low=0.0, high=0.1))
    study = write_study('[tricks]\ninclude = ["shift"]\n', n_trials=1)
    run_cli("run", study, "--storage", sqlite_url, "--plugin", first)
    storage = optuna.storages.RDBStorage(sqlite_url)
    study_id = storage.get_study_id_from_name("tiny")
    with storage.scoped_session() as session:  # as a study made before automl recorded its plugins
        from optuna.storages._rdb.models import StudyUserAttributeModel

        session.query(StudyUserAttributeModel).filter_by(study_id=study_id, key=records.STUDY_PLUGINS).delete()
    storage.remove_session()
    _, _, err = run_cli("run", study, "--storage", sqlite_url, "--n-trials", "2", "--plugin", second, expect=2)
    assert f"ran trick 'shift' from {first}, but it now comes from {second}" in err
