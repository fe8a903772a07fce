"""A trick that raises fails its own trials only: FAIL with the reason and the trick, hook, step and exception,
its params recorded, the study going on; a trick failing trials in a row is turned off; bad attrs are refused."""

from __future__ import annotations

import json

import optuna
import pytest

from automl.cli import main
from automl.study.objective import TURN_OFF_AFTER

PLUGIN = '''
import inspect

from automl import Trick, hookimpl


class Breaks(Trick):
    name = "breaks"

    @classmethod
    def search_space(cls, trial):
        return {"at": trial.suggest_int("at", 4, 4)}

    def __init__(self, at=4):
        self.at = at

    def on_step_end(self, run, loss):
        if run.step == self.at:
            raise RuntimeError("boom at step %d" % run.step)


class Refuses(Trick):
    name = "refuses"

    @classmethod
    def search_space(cls, trial):
        return {"mode": trial.suggest_categorical("mode", ["fine", "bad"])}

    def __init__(self, mode="fine"):
        # The host builds a trick from points of its space at load, where a refusal of its own values is
        # caught; this one refuses only when a trial builds it, as an __init__ failing on something other
        # than its params would (a file, a device), and so reaches the trial.
        if mode == "bad" and any(f.function == "select_tricks" for f in inspect.stack(0)):
            raise ValueError(f"refuses {mode=}")


class BadAttr(Trick):
    name = "bad_attr"

    def setup(self, run):
        run.attrs["bad_attr.model"] = run.model


class OwnKey(Trick):
    name = "own_key"

    def on_trial_end(self, run, ended):
        run.attrs["steps"] = -1  # would overwrite the steps automl records


@hookimpl
def automl_register_tricks():
    return [Breaks, Refuses, BadAttr, OwnKey]
'''


def _run(capsys, write_study, sqlite_url, tmp_path, extra, n_trials):
    plugin = tmp_path / "breaking.py"
    plugin.write_text(PLUGIN)
    study = write_study(extra, n_trials=n_trials, trial_budget="6steps")
    code = main(["run", str(study), "--storage", sqlite_url, "--plugin", str(plugin)])
    _, err = capsys.readouterr()
    assert code != 2, err  # the study file and plugin are good input
    return code, err, optuna.load_study(study_name="tiny", storage=sqlite_url).trials


def test_a_hook_raising_at_step_4_fails_only_the_trials_that_enable_it(capsys, write_study, sqlite_url, tmp_path):
    code, err, trials = _run(capsys, write_study, sqlite_url, tmp_path,
                             '[tricks]\ninclude = ["breaks", "cosine"]\n', n_trials=6)
    assert code == 0, err
    assert len(trials) == 6
    enabled = [t for t in trials if t.params["breaks.enabled"]]
    others = [t for t in trials if not t.params["breaks.enabled"]]
    assert 1 <= len(enabled) <= 5  # about half, with the study's seed
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in others)
    for t in enabled:
        assert t.state == optuna.trial.TrialState.FAIL
        assert t.user_attrs["end_reason"] == "trick_error"
        assert t.user_attrs["end_detail"] == "breaks.on_step_end at step 4: RuntimeError: boom at step 4"
        assert t.params["breaks.at"] == 4 and "cosine.enabled" in t.params  # the params are recorded
        assert t.user_attrs["spent_seconds"] > 0
    records = json.loads(main(["trials", "tiny", "--json", "--storage", sqlite_url]) == 0 and capsys.readouterr()[0])
    assert sorted(r["end_reason"] for r in records) == sorted(["trick_error"] * len(enabled) + ["complete"] * len(others))


def test_an_init_that_raises_fails_the_trial_with_all_its_params(capsys, write_study, sqlite_url, tmp_path):
    # Refuses says no only when a trial builds it: the host's load-time check of its space passes.
    code, err, trials = _run(capsys, write_study, sqlite_url, tmp_path,
                             '[tricks]\ninclude = ["refuses", "warmup"]\n[tricks.refuses]\nenabled = true\n'
                             '[tricks.warmup]\nenabled = true\n', n_trials=5)
    assert code == 0, err
    modes = [t.params["refuses.mode"] for t in trials]
    assert len(trials) == 5 and "bad" in modes and "fine" in modes
    for t in trials:
        assert "warmup.fraction" in t.params  # suggested after refuses', recorded all the same
        if t.params["refuses.mode"] == "fine":
            assert t.state == optuna.trial.TrialState.COMPLETE
            continue
        assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["end_reason"] == "trick_error"
        assert t.user_attrs["end_detail"] == "refuses.__init__ before training: ValueError: refuses mode='bad'"


def test_a_value_that_is_not_json_is_refused_when_set_naming_the_key(capsys, write_study, sqlite_url, tmp_path):
    code, err, trials = _run(capsys, write_study, sqlite_url, tmp_path,
                             '[tricks]\ninclude = ["bad_attr"]\n[tricks.bad_attr]\nenabled = true\n', n_trials=1)
    assert code == 0, err
    (t,) = trials
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["end_reason"] == "trick_error"
    assert t.user_attrs["end_detail"].startswith(
        "bad_attr.setup at step 0: TypeError: run.attrs['bad_attr.model'] = ")
    assert "cannot be stored with the trial as JSON" in t.user_attrs["end_detail"]
    assert "bad_attr.model" not in t.user_attrs


def test_a_trick_failing_trials_in_a_row_is_turned_off_with_one_warning(capsys, write_study, sqlite_url, tmp_path):
    with pytest.warns(RuntimeWarning, match="trick 'breaks' is turned off") as warned:
        code, err, trials = _run(capsys, write_study, sqlite_url, tmp_path,
                                 '[tricks]\ninclude = ["breaks"]\n[tricks.breaks]\nenabled = true\n',
                                 n_trials=TURN_OFF_AFTER + 2)
    assert code == 0, err
    assert len([w for w in warned if "turned off" in str(w.message)]) == 1
    failed, rest = trials[:TURN_OFF_AFTER], trials[TURN_OFF_AFTER:]
    assert all(t.user_attrs["end_reason"] == "trick_error" for t in failed)
    for t in rest:
        assert t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["tricks"] == []
        assert "turned off" in t.user_attrs["unavailable"]["breaks"]


def test_an_engine_error_still_ends_the_study(capsys, write_study, sqlite_url, tmp_path, monkeypatch):
    import automl.study.objective as objective

    def broken(*args, **kwargs):
        raise RuntimeError("an engine bug")

    monkeypatch.setattr(objective, "train", broken)
    with pytest.raises(RuntimeError, match="an engine bug"):  # with its traceback: exit 1 from python
        # No trick of the plugin on (those that refuse their options would fail the trial before training).
        _run(capsys, write_study, sqlite_url, tmp_path, '[tricks]\ninclude = ["cosine"]\n', n_trials=3)
    trials = optuna.load_study(study_name="tiny", storage=sqlite_url).trials
    assert len(trials) == 1 and trials[0].state == optuna.trial.TrialState.FAIL


def test_attrs_a_study_cannot_store_fail_the_trial_as_try_trick_says(capsys, write_study, sqlite_url, tmp_path):
    code, err, trials = _run(capsys, write_study, sqlite_url, tmp_path,
                             '[tricks]\ninclude = ["own_key"]\n[tricks.own_key]\nenabled = true\n', n_trials=1)
    assert code == 0, err
    (t,) = trials
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["end_reason"] == "bad_attrs"
    assert t.user_attrs["end_detail"] == ("run.attrs['steps'] is a key automl records itself; prefix it with the "
                                          "trick's name")
