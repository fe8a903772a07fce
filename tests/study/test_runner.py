"""The study runner: every sampler and pruner runs, trials record why they ended, the budget guard holds."""

from __future__ import annotations

import optuna
import pytest

from automl.budget import Budget
from automl.errors import UserError
from automl.host import get_host
from automl.study.config import load_study_file
from automl.study.runner import BudgetGuard, Overrides, prepare, resolve_device, run_study, spent_seconds


@pytest.mark.parametrize(("sampler", "pruner"), [("tpe", "median"), ("random", "hyperband"), ("cmaes", "none"),
                                                 ("gp", "median")])
def test_each_sampler_and_pruner_runs_a_study(write_study, sqlite_url, sampler, pruner):
    path = write_study(n_trials=3)
    path.write_text(path.read_text().replace('sampler = "random"', f'sampler = "{sampler}"')
                    .replace('pruner = "none"', f'pruner = "{pruner}"'))
    prepared = prepare(load_study_file(path), get_host(), Overrides(storage=sqlite_url))
    study = run_study(prepared)
    assert len(study.trials) == 3
    assert type(study.sampler).__name__.lower().startswith(sampler[:2])
    for trial in study.trials:
        assert trial.user_attrs["end_reason"] in ("complete", "pruned")
        assert trial.user_attrs["spent_seconds"] > 0
        assert set(trial.user_attrs["tricks"]) <= set(get_host().tricks)
        assert len(trial.intermediate_values) >= 1


def test_cli_overrides_win_over_the_file(write_study, sqlite_url):
    prepared = prepare(load_study_file(write_study()), get_host(),
                       Overrides(storage=sqlite_url, study_name="other", n_trials=1, trial_budget="4steps", seed=7))
    study = run_study(prepared)
    assert study.study_name == "other" and len(study.trials) == 1
    assert study.trials[0].user_attrs["steps"] == 4
    assert prepared.seed == 7


def test_budget_guard_counts_every_finished_trial():
    study = optuna.create_study()
    guard = BudgetGuard(Budget(10, "seconds"), Budget(3, "seconds"))
    for spent in (3.2, 3.1):
        trial = study.ask()
        trial.set_user_attr("spent_seconds", spent)
        study.tell(trial, 0.5)
    assert spent_seconds(study) == pytest.approx(6.3)
    assert guard.next_trial_cost(study) == pytest.approx(3.15)
    assert guard.fits(study)  # 3.7 left >= 3.15
    trial = study.ask()
    trial.set_user_attr("spent_seconds", 1.0)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert not guard.fits(study)  # 2.7 left < a whole trial


def test_step_budgets_are_estimated_from_the_trials_that_ran():
    study = optuna.create_study()
    guard = BudgetGuard(Budget(10, "seconds"), Budget(100, "steps"))
    assert guard.next_trial_cost(study) == 0 and guard.fits(study)
    trial = study.ask()
    trial.set_user_attr("spent_seconds", 6.0)
    study.tell(trial, 0.1)
    assert not guard.fits(study)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is visible; use --device cpu"):
            resolve_device("cuda:0")
