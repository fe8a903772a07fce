"""The study runner: every sampler and pruner runs, trials record why they ended, the ledger bounds the budget."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import torch

from automl.budget import Budget
from automl.errors import UserError
from automl.host import get_host
from automl.study.config import load_study_file
from automl.storage.ledger import Ledger
from automl.storage.models import TrialCostModel
from automl.storage.optuna_adapter import study_engine
from automl.study.runner import Overrides, create_study, prepare, resolve_device, run_study


@pytest.mark.parametrize(("sampler", "pruner"), [("tpe", "median"), ("random", "hyperband"), ("cmaes", "none"),
                                                 ("tpe", "asha"), ("gp", "median")])
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
    assert prepared.seed == 7 and study.trials[0].user_attrs["seed"] == 7  # trains with the seed too


def test_after_a_study_the_ledger_agrees_with_the_trials(write_study, sqlite_url):
    # Whatever the machine's speed: the total is set, on resuming, to what one trial was measured to cost
    # plus room for three more by the ledger's own estimate, so a second trial is always admitted.
    path = write_study(n_trials=50, trial_budget="0.3s")
    first = run_study(prepare(load_study_file(path), get_host(), Overrides(storage=sqlite_url, n_trials=1)))
    book = Ledger(study_engine(first), "tiny")
    total = book.totals().spent + 3 * book.estimate(Budget(0.3, "seconds"))
    prepared = prepare(load_study_file(path), get_host(), Overrides(storage=sqlite_url, total_budget=f"{total}s"))
    study = run_study(prepared)
    trials = study.get_trials()
    assert 2 <= len(trials) < 50 and all(t.state.is_finished() for t in trials)
    costs = sa.select(TrialCostModel.spent_seconds, TrialCostModel.state, TrialCostModel.trial_number)
    with study_engine(study).connect() as connection:
        rows = connection.execute(costs.where(TrialCostModel.study_name == "tiny")).all()
    totals = book.totals()
    assert totals.total == pytest.approx(total)
    assert totals.reserved == pytest.approx(0.0, abs=1e-9)
    assert totals.spent == pytest.approx(sum(r.spent_seconds for r in rows))
    assert totals.spent == pytest.approx(sum(t.user_attrs["spent_seconds"] for t in trials))
    assert sorted(r.trial_number for r in rows) == [t.number for t in trials]
    assert {r.state for r in rows} <= {"complete", "pruned"}
    # The study stopped only once the next trial no longer fitted in what was left.
    assert total - totals.spent < book.estimate(Budget(0.3, "seconds"))


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not __import__("torch").cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is visible; use --device cpu"):
            resolve_device("cuda:0")


def test_a_dead_workers_reservation_is_reclaimed_and_the_study_still_runs_n_trials(write_study, sqlite_url):
    path = write_study(n_trials=3)
    path.write_text(path.read_text().replace("seed = 0", "seed = 0\nheartbeat_interval = 1\ngrace_period = 2"))
    prepared = prepare(load_study_file(path), get_host(), Overrides(storage=sqlite_url))
    study = create_study(prepared)
    # What a worker killed before its trial's first heartbeat leaves behind, three seconds ago.
    book = Ledger(study_engine(study), "tiny")
    orphan = book.reserve(5.0, n_trials=3)
    with study_engine(study).begin() as connection:
        connection.execute(sa.update(TrialCostModel).where(TrialCostModel.id == orphan).values(
            heartbeat_at=sa.func.datetime("now", "-3 seconds")))
    run_study(prepared, study)
    assert len(study.trials) == 3
    assert book.totals().reserved == pytest.approx(0.0, abs=1e-9) and book.totals().trials == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_parent_of_workers_keeps_the_data_off_the_gpu(write_study):
    prepared = prepare(load_study_file(write_study()), get_host(), Overrides(device="cuda"), data_on_cpu=True)
    assert prepared.device.type == "cuda" and prepared.data.train.x.device.type == "cpu"
    prepared = prepare(load_study_file(write_study()), get_host(), Overrides(device="cuda"))
    assert prepared.data.train.x.device.type == "cuda"
