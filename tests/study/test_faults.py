"""What dead, interrupted and resumed workers leave behind is recovered: each test builds, in a real study
database, the exact state a worker that died at one moment leaves, then lets the next worker run.

Issue 11, items 1, 2, 4, 10, 11 and 12 (the signals and cut connections are in test_fault_signals.py).
"""

from __future__ import annotations

import io

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from automl.host import get_host
from automl.storage.artifacts import artifact_store
from automl.storage.ledger import Ledger
from automl.storage.models import TrialCostModel
from automl.storage.optuna_adapter import set_user_attrs, study_engine
from automl.study.config import load_study_file
from automl.records import ATTR_CHECKPOINT
from automl.study.recovery import DUPLICATE_RETRY, NOT_RETRIED, WORKER_DIED, Recovery
from automl.study.runner import Overrides, create_study, prepare, run_study

SEARCHED = "lr = { low = 0.01, high = 0.5, log = true }\n"
GRACE = 2.0


@pytest.fixture
def faulty(write_study, sqlite_url):
    """A tiny study with a continuous search space and a 1 s heartbeat, prepared and created."""

    def make(n_trials: int = 3, url: str = sqlite_url, extra: str = ""):
        path = write_study(n_trials=n_trials)
        text = path.read_text().replace("seed = 0", "seed = 0\nheartbeat_interval = 1\ngrace_period = 2")
        path.write_text(text.replace("lr = 0.05\n", SEARCHED) + extra)
        prepared = prepare(load_study_file(path), get_host(), Overrides(storage=url))
        return prepared, create_study(prepared)

    return make


def backdate(study: optuna.Study, seconds: float) -> None:
    """Every heartbeat, reservation and retry claim ``seconds`` older, by the database's own clock."""
    engine = study_engine(study)
    with engine.begin() as connection:
        for column in ("heartbeat_at", "retry_claimed_at"):
            if engine.dialect.name == "sqlite":
                connection.execute(sa.text(f"UPDATE automl_trial_cost SET {column} = datetime({column}, :shift)"),
                                   {"shift": f"-{seconds} seconds"})
            else:
                connection.execute(sa.text(f"UPDATE automl_trial_cost SET {column} = {column} - "
                                           "make_interval(secs => :s)"), {"s": seconds})


def cost_rows(study: optuna.Study) -> dict[int | None, TrialCostModel]:
    with study_engine(study).connect() as connection:
        return {r.trial_number: r for r in connection.execute(sa.select(TrialCostModel)).all()}


def assert_balanced(study: optuna.Study, n_trials: int) -> None:
    """Exactly ``n_trials`` configurations (a retry chain counts once), none left RUNNING or WAITING, the
    ledger's spent the sum of the cost rows, nothing reserved, every trial with its cost row."""
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    retries = [t for t in trials if "failed_trial" in t.system_attrs]
    assert len(trials) - len(retries) == n_trials
    rows = cost_rows(study)
    assert set(rows) == {t.number for t in trials}
    totals = Ledger(study_engine(study), study.study_name).totals()
    assert totals.reserved == pytest.approx(0.0, abs=1e-9)
    assert totals.spent == pytest.approx(sum(r.spent_seconds for r in rows.values()))
    params = [tuple(sorted(t.params.items())) for t in trials if "failed_trial" not in t.system_attrs]
    assert len(set(params)) == len(params)  # no repeated draw outside a retry chain


def running_trial(study: optuna.Study, ledger: Ledger) -> tuple[int, optuna.Trial]:
    """A worker's reservation and the trial it started, drawn from the study's space (not yet tied together)."""
    reservation = ledger.reserve(5.0, n_trials=3)
    return reservation, study.ask({"train.lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)})


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(faulty):
    prepared, study = faulty()
    ledger = Ledger(study_engine(study), study.study_name)
    # The worker reserved, Optuna created its trial, and it died before tying them (item 1).
    ledger.reserve(5.0, n_trials=3)
    orphan = study.ask()
    orphan.suggest_float("train.lr", 0.01, 0.5, log=True)
    backdate(study, GRACE + 1)
    run_study(prepared, study)
    trials = study.get_trials(deepcopy=False)
    assert trials[orphan.number].state == TrialState.FAIL
    assert trials[orphan.number].user_attrs["end_reason"] == WORKER_DIED
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    # What the orphan had drawn is kept; the rest of a define-by-run space is drawn as the retry runs.
    assert trials[orphan.number].params.items() <= retry.params.items() and retry.state == TrialState.COMPLETE
    assert retry.user_attrs["seed"] == prepared.seed + orphan.number  # the orphan's seed
    assert_balanced(study, 3)


def test_a_live_workers_trial_is_not_taken_for_an_orphan(faulty):
    _, study = faulty()
    ledger = Ledger(study_engine(study), study.study_name)
    reservation = ledger.reserve(5.0, n_trials=3)
    trial = study.ask()  # between ask and tying its reservation: a fresh reservation says a worker is there
    Recovery(study, ledger, GRACE).run()
    assert study.get_trials(deepcopy=False)[trial.number].state == TrialState.RUNNING
    assert ledger.attach(reservation, trial.number)
    Recovery(study, ledger, GRACE).run()
    assert study.get_trials(deepcopy=False)[trial.number].state == TrialState.RUNNING


def test_a_resumed_study_draws_new_points(faulty):
    prepared, study = faulty(n_trials=3)
    run_study(prepared, study)
    prepared.n_trials = 6  # the same file run again with a larger n_trials (item 2)
    run_study(prepared, create_study(prepared))
    lrs = [t.params["train.lr"] for t in study.get_trials(deepcopy=False)]
    assert len(lrs) == 6 and len(set(lrs)) == 6
    assert prepared.session == 1


def test_a_study_run_once_in_one_process_samples_as_its_seed_says(faulty, tmp_path):
    draws = []
    for name in ("a", "b"):
        prepared, study = faulty(n_trials=2, url=f"sqlite:///{tmp_path / name}.db")
        run_study(prepared, study)
        draws.append([t.params["train.lr"] for t in study.trials])
    assert draws[0] == draws[1]


def test_a_step_budget_reserves_a_timed_estimate_before_any_trial_has_completed(faulty):
    prepared, study = faulty(extra="")
    ledger = Ledger(study_engine(study), study.study_name)
    ledger.open(3600.0)  # a total budget: the first trials in steps must be bounded by it (item 4)
    from automl.study.worker import Worker

    estimates = []
    worker = Worker(study, ledger, prepared.trial_budget, 3, interval=1, grace=GRACE,
                    first_estimate=lambda: estimates.append(1) or 2.5)
    trial = worker.next_trial()
    assert ledger.totals().reserved == pytest.approx(2.5)
    worker.next_trial()
    assert ledger.totals().reserved == pytest.approx(5.0) and estimates == [1]  # timed once per worker
    assert trial is not None


def test_the_timed_estimate_grows_with_the_trial_budget(faulty):
    prepared, _ = faulty(n_trials=1)
    from automl.budget import Budget
    from automl.study.objective import Objective

    def estimate(steps: int) -> float:
        return Objective(config=prepared.study_file.config, data=prepared.data, tricks=prepared.tricks,
                         settings=prepared.settings, device=prepared.device, budget=Budget(steps, "steps"),
                         artifacts=None, best_model_cache=None, seed=prepared.seed).first_estimate()

    assert 0 < estimate(6) < estimate(6000)


def test_a_stale_trial_failed_before_its_settlement_is_settled_and_retried_by_the_next_worker(faulty):
    prepared, study = faulty()
    ledger = Ledger(study_engine(study), study.study_name)
    reservation, trial = running_trial(study, ledger)
    assert ledger.attach(reservation, trial.number) and ledger.heartbeat(reservation, 1.25)
    # A worker found it stale and failed it, and died before settling or retrying it (item 10).
    study._storage.set_trial_user_attr(trial._trial_id, "end_reason", WORKER_DIED)
    study.tell(trial, state=TrialState.FAIL)
    backdate(study, GRACE + 1)
    recovery = Recovery(study, ledger, GRACE)
    recovery.run()
    recovery.run()  # once more, as a second worker would: nothing changes
    assert cost_rows(study)[trial.number].state == "failed"
    assert cost_rows(study)[trial.number].spent_seconds == pytest.approx(1.25)  # its last heartbeat's
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert [t.system_attrs["failed_trial"] for t in waiting] == [trial.number]
    run_study(prepared, study)
    assert_balanced(study, 3)


def waiting_retries(study: optuna.Study) -> list[int]:
    return [t.system_attrs["failed_trial"] for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))]


def retries_of(study: optuna.Study, number: int) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get("failed_trial") == number]


def dead_trial(study: optuna.Study) -> tuple[Ledger, optuna.Trial]:
    """The study's ledger, and a trial whose worker sent one heartbeat and went silent past the grace period."""
    ledger = Ledger(study_engine(study), study.study_name)
    reservation, trial = running_trial(study, ledger)
    assert ledger.attach(reservation, trial.number) and ledger.heartbeat(reservation, 0.5)
    backdate(study, GRACE + 1)
    return ledger, trial


@pytest.mark.parametrize("database", ["sqlite_url", "postgres_url"])
def test_two_recoveries_at_once_queue_one_retry_of_a_failed_trial(faulty, request, database):
    prepared, study = faulty(url=request.getfixturevalue(database))
    ledger, trial = dead_trial(study)
    # Two recoveries ran at once (the advisory lock's connection was cut under the first, issue 25 item 10): both
    # read the study before either queued the dead trial's retry. Only the one that claims it queues it.
    first, second = Recovery(study, ledger, GRACE), Recovery(study, ledger, GRACE)
    first._settle_dead()
    read_by_second = study.get_trials(deepcopy=False)
    first._enqueue_retries()
    second._enqueue_retries(read_by_second)
    assert waiting_retries(study) == [trial.number]
    run_study(prepared, study)
    retries = retries_of(study, trial.number)
    assert [t.state.name for t in retries] == ["COMPLETE"]
    assert_balanced(study, 3)


def test_a_claim_whose_recovery_died_before_queueing_is_taken_again_after_the_grace_period(faulty):
    prepared, study = faulty()
    ledger, trial = dead_trial(study)
    Recovery(study, ledger, GRACE)._settle_dead()
    assert ledger.claim_retry(trial.number, GRACE)  # ... and that recovery died before queueing the retry
    Recovery(study, ledger, GRACE).run()
    assert waiting_retries(study) == []  # a fresh claim: its recovery may be queueing it now
    backdate(study, GRACE + 1)
    Recovery(study, ledger, GRACE).run()
    assert waiting_retries(study) == [trial.number]
    run_study(prepared, study)
    assert_balanced(study, 3)


def test_a_trial_queued_twice_for_retry_runs_again_once(faulty):
    prepared, study = faulty()
    ledger, trial = dead_trial(study)
    # A recovery stalled past the grace period between its claim and queueing the retry, so a second one took the
    # claim again (a triple fault): both queued it. The second retry is failed while it waits, never run.
    first, second = Recovery(study, ledger, GRACE), Recovery(study, ledger, GRACE)
    first.run()
    second._add_retry(study.get_trials(deepcopy=False)[trial.number])
    assert waiting_retries(study) == [trial.number, trial.number]
    run_study(prepared, study)
    retries = retries_of(study, trial.number)
    assert sorted(t.state.name for t in retries) == ["COMPLETE", "FAIL"]
    (extra,) = [t for t in retries if t.state == TrialState.FAIL]
    assert extra.user_attrs["end_reason"] == DUPLICATE_RETRY and extra.number == max(t.number for t in retries)
    assert_balanced(study, 3)
    assert ledger.totals().trials == 3


def test_a_worker_that_died_between_settling_and_telling_has_its_trial_failed_and_retried(faulty):
    prepared, study = faulty()
    ledger = Ledger(study_engine(study), study.study_name)
    reservation, trial = running_trial(study, ledger)
    assert ledger.attach(reservation, trial.number)
    assert ledger.settle(reservation, trial.number, 0.75, "complete")  # ... and it died before telling Optuna
    backdate(study, GRACE + 1)
    recovery = Recovery(study, ledger, GRACE)
    recovery.run()
    recovery.run()  # once more, as a second worker would: nothing changes
    row = cost_rows(study)[trial.number]
    assert (row.state, row.spent_seconds) == ("failed", pytest.approx(0.75))  # its time still counted
    assert study.get_trials(deepcopy=False)[trial.number].user_attrs["end_reason"] == WORKER_DIED
    assert ledger.totals().trials == 0  # its place is its retry's
    run_study(prepared, study)
    assert [t.system_attrs.get("failed_trial") for t in study.trials].count(trial.number) == 1
    assert_balanced(study, 3)


def test_a_retry_with_no_budget_left_is_settled_and_reported_not_left_waiting(faulty, capsys):
    prepared, study = faulty(n_trials=2)
    run_study(prepared, study)
    ledger = Ledger(study_engine(study), study.study_name)
    ledger.open(ledger.totals().spent + 0.001)  # the total budget is now spent
    # A third trial whose worker died (run with a larger n_trials), with a retry due (item 11).
    reservation = ledger.reserve(0.0, n_trials=3)
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)})
    assert ledger.attach(reservation, trial.number)
    # It had saved a checkpoint: no retry will resume it, so the recovery that closes the retry removes it.
    store = artifact_store(prepared.study_file.config.study.artifacts)
    store.write("checkpoint-of-the-dead", io.BytesIO(b"a checkpoint"))
    set_user_attrs(study, trial, {ATTR_CHECKPOINT: {"artifact": "checkpoint-of-the-dead"}})
    backdate(study, GRACE + 1)
    prepared.n_trials = 3
    run_study(prepared, study)
    with pytest.raises(optuna.artifacts.exceptions.ArtifactNotFound):
        store.open_reader("checkpoint-of-the-dead")
    trials = study.get_trials(deepcopy=False)
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    assert retry.state == TrialState.FAIL and retry.user_attrs["end_reason"] == NOT_RETRIED
    assert "budget was spent" in capsys.readouterr().err
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert set(cost_rows(study)) == {t.number for t in trials}
    assert ledger.totals().reserved == pytest.approx(0.0, abs=1e-9)
    # Issue 25, item 8: the dead trial gave its place to its retry; the retry never ran, so the place is its
    # own again: the ledger counts the 3 trials that count (2 completed, 1 failed), not 2.
    assert ledger.totals().trials == 3
