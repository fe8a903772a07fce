"""One worker's loop around a study: reserve, ask, run, record, tell, settle; with its heartbeat and the
callback that settles and retries a dead worker's trial."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from typing import Any, Protocol

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from automl.budget import Budget
from automl.storage.artifacts import save_trial_model
from automl.storage.ledger import Ledger
from automl.storage.optuna_adapter import rdb_storage, set_user_attrs, study_engine, trial_id
from automl.study.objective import Outcome, TrialPlan
from automl.study.records import ATTR_SPENT, FINISHED, STATE_NAMES, SYS_RETRY_HISTORY


class TrialObjective(Protocol):
    """What a worker runs: plan a trial (recorded before training starts), then train it."""

    def begin(self, trial: optuna.Trial) -> TrialPlan: ...

    def train(self, trial: optuna.Trial, plan: TrialPlan) -> Outcome: ...


class Worker:
    """One worker's loop around a study; many may share a study, on one machine or several.

    The trial's device time and its place among ``n_trials`` are reserved in the ledger, in one
    conditional UPDATE, before Optuna creates the trial: a trial that would not fit is never
    started, and racing workers on any machine never take the study past either bound.
    """

    def __init__(self, study: optuna.Study, ledger: Ledger, trial_budget: Budget, n_trials: int | None,
                 artifacts: FileSystemArtifactStore | None = None) -> None:
        self.study = study
        self.ledger = ledger
        self.trial_budget = trial_budget
        self.n_trials = n_trials
        self.artifacts = artifacts
        """Where completed trials' models go; None keeps none."""
        self.storage = rdb_storage(study)
        self.interval = getattr(self.storage, "heartbeat_interval", None)
        # A reservation not yet tied to its trial by a heartbeat after the grace period belongs to a worker
        # that died before its trial's first heartbeat. Without heartbeats, trials are tied when asked.
        self.orphan_after: float | None = None
        if self.interval:
            self.orphan_after = float(self.storage.grace_period or 2 * self.interval)
            self.ledger.reclaim(self.orphan_after)
        self.reservations: dict[int, int] = {}
        """The reservation each of this worker's trials holds, by trial number."""

    def next_trial(self) -> optuna.Trial | None:
        """The next trial, holding its reservation, or None when the study is done (n_trials or total budget)."""
        with warnings.catch_warnings():  # Optuna calls it experimental; it is the heartbeat's documented use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        reservation = self.ledger.reserve(self.trial_budget, self.n_trials)
        if reservation is None and self.orphan_after is not None and self.ledger.reclaim(self.orphan_after):
            reservation = self.ledger.reserve(self.trial_budget, self.n_trials)
        if reservation is None:
            return None
        try:
            with warnings.catch_warnings():  # automl's loop sends the heartbeats study.optimize would
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                trial = self.study.ask()
        except BaseException:
            self.ledger.release(reservation)
            raise
        self.reservations[trial.number] = reservation
        if not self.interval:
            self.ledger.heartbeat(reservation, trial.number, 0.0)
        return trial

    def run(self, trial: optuna.Trial, objective: TrialObjective) -> FrozenTrial:
        """Run one trial, record it, tell Optuna how it ended and settle its reservation; an error other than
        a failed trial fails the trial and is raised, as in ``study.optimize``."""
        started = time.perf_counter()
        outcome, error = None, None
        with _Heartbeat(self, trial, started):
            try:
                plan = objective.begin(trial)
                self.record(trial, plan.attrs)
                outcome = objective.train(trial, plan)
                self.record(trial, self._with_artifacts(trial, outcome))
            except BaseException as exc:  # noqa: BLE001 - told as FAIL, then raised
                error = exc
        if outcome is None or error is not None:
            # The objective's own clock stopped with it: what the worker saw is what the trial spent.
            outcome = Outcome(TrialState.FAIL, time.perf_counter() - started, {})
            with contextlib.suppress(Exception):  # the error that stopped the trial is the one to raise
                self.record(trial, {ATTR_SPENT: outcome.spent_seconds})
        frozen = self.study.tell(trial, outcome.value if outcome.state == TrialState.COMPLETE else None,
                                 state=outcome.state, skip_if_finished=True)
        state = frozen.state if frozen.state in FINISHED else TrialState.FAIL
        self.ledger.settle(self.reservations.pop(trial.number), trial.number, outcome.spent_seconds,
                           STATE_NAMES[state])
        if error is not None:
            raise error
        return frozen

    def record(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """Write the trial's user attributes, all in one transaction."""
        set_user_attrs(self.study, trial, attrs)

    def _with_artifacts(self, trial: optuna.Trial, outcome: Outcome) -> dict[str, Any]:
        if outcome.model is None or self.artifacts is None:
            return outcome.attrs
        return {**outcome.attrs, **save_trial_model(trial, self.artifacts, outcome.model, outcome.weights)}


class _Heartbeat:
    """While a trial runs: Optuna's heartbeat (so a dead worker's trial is failed) and the ledger's
    (what the trial has spent so far, what it is settled to if its worker dies)."""

    def __init__(self, worker: Worker, trial: optuna.Trial, started: float) -> None:
        self.worker, self.trial, self.started = worker, trial, started
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def beat(self) -> None:
        self.worker.storage.record_heartbeat(trial_id(self.trial))
        self.worker.ledger.heartbeat(self.worker.reservations[self.trial.number], self.trial.number,
                                     time.perf_counter() - self.started)

    def loop(self) -> None:
        while not self.stop.wait(self.worker.interval):
            with contextlib.suppress(Exception):  # a lost beat is retried at the next one
                self.beat()

    def __enter__(self) -> "_Heartbeat":
        if self.worker.interval:
            self.worker.storage.record_heartbeat(trial_id(self.trial))
            self.thread = threading.Thread(target=self.loop, name="automl-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()


class SettleStaleTrial:
    """Optuna's callback for a trial whose worker stopped sending heartbeats: settle its reservation to
    what its last heartbeat recorded, then retry it once with the same parameters."""

    def __init__(self, max_retry: int = 1) -> None:
        self.max_retry = max_retry
        with warnings.catch_warnings():  # Optuna calls it experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # Optuna's rule: a trial is retried while its retry history is shorter than max_retry.
        retried = len(trial.system_attrs.get(SYS_RETRY_HISTORY, [])) < self.max_retry
        Ledger(study_engine(study), study.study_name).settle_stale(trial.number, retried=retried)
        self.retry(study, trial)


__all__ = ["SettleStaleTrial", "TrialObjective", "Worker"]
