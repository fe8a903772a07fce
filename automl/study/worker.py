"""One worker's loop around a study: recover, reserve, ask, run, record, tell, settle; with its heartbeat."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Any, Callable, Protocol

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import FrozenTrial, TrialState

from automl.budget import Budget
from automl.storage.artifacts import save_trial_model
from automl.interrupts import checkpoint, signal_name
from automl.storage.ledger import Ledger
from automl.storage.optuna_adapter import frozen_trial, set_user_attrs
from automl.storage.retry import DatabaseLost
from automl.errors import TrialFailed, UserError
from automl.study.failures import raised_in_model
from automl.study.incumbent import Intensifier
from automl.study.plan import Outcome, TrialPlan
from automl.records import ATTR_DETAIL, ATTR_END, ATTR_SPENT, state_name
from automl.study.recovery import INTERRUPTED, Recovery
from automl.trick_errors import raised_in


class TrialObjective(Protocol):
    """What a worker runs: plan a trial (recorded before training starts), then train it."""

    def begin(self, trial: optuna.Trial) -> TrialPlan: ...

    def train(self, trial: optuna.Trial, plan: TrialPlan) -> Outcome: ...


class Worker:
    """One worker's loop around a study; many may share a study, on one machine or several.

    The trial's device time and its place among ``n_trials`` are reserved in the ledger, in one
    conditional UPDATE, before Optuna creates the trial: a trial that would not fit is never
    started, and racing workers on any machine never take the study past either bound. The
    reservation is tied to the trial the moment Optuna has created it; from then on the ledger's
    heartbeat says whether the trial's worker is alive (see ``automl.study.recovery``).
    """

    def __init__(self, study: optuna.Study, ledger: Ledger, trial_budget: Budget, n_trials: int | None, *,
                 interval: float, grace: float, artifacts: FileSystemArtifactStore | None = None,
                 first_estimate: Callable[[], float] | None = None, intensifier: Intensifier | None = None) -> None:
        self.study = study
        self.ledger = ledger
        self.trial_budget = trial_budget
        self.n_trials = n_trials
        self.interval = interval
        """Seconds between the running trial's heartbeats."""
        self.artifacts = artifacts
        """Where completed trials' models go; None keeps none."""
        self.recovery = Recovery(study, ledger, grace, every=interval, artifacts=artifacts)
        self.first_estimate = first_estimate
        """Times what a trial in steps or epochs costs before any has completed; called once at most."""
        self.estimated = 0.0
        self.reservations: dict[int, int] = {}
        """The reservation each of this worker's trials holds, by trial number."""
        self.intensifier = intensifier
        """Queues repeats of the best configurations at new seeds between trials; None queues none."""

    def next_trial(self) -> optuna.Trial | None:
        """The next trial, holding its reservation, or None when the study is done (n_trials or total budget)."""
        checkpoint()
        if getattr(self.study.sampler, "exhausted", False):
            print("automl: note: every combination of the brute-force grid has run: the study is done",
                  file=sys.stderr)
            return None
        self.recovery.run_due()
        reservation = self.ledger.reserve(self.trial_budget, self.n_trials, first_estimate=self._first_estimate())
        if reservation is None:
            self.recovery.run()  # what it gives back (a dead worker's slot, its time) may leave room
            reservation = self.ledger.reserve(self.trial_budget, self.n_trials,
                                              first_estimate=self._first_estimate())
        if reservation is None:
            self.recovery.close_waiting()
            self._refuse_if_none_can_start()
            return None
        try:
            if self.intensifier is not None:
                self.intensifier.enqueue(self.study)
            trial = self.study.ask()
        except BaseException:
            self.ledger.release(reservation)
            raise
        if not self.ledger.attach(reservation, trial.number):
            # This worker was paused past the grace period before it got its trial: its reservation was
            # given back, so the trial runs on no reservation; fail it untrained (nothing to retry).
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            print(f"automl: trial {trial.number} dropped: this worker was paused for longer than the grace "
                  "period before it started", file=sys.stderr)
            return self.next_trial()
        self.reservations[trial.number] = reservation
        return trial

    def _first_estimate(self) -> float:
        """A trial in steps or epochs has no duration of its own: before any has completed, reserve a timed
        estimate, so that a total budget bounds the first trials too (measured once, only when needed)."""
        if self.first_estimate is not None:
            needed = (not self.trial_budget.is_time and self.ledger.completed_mean() is None
                      and self.ledger.totals().total is not None)
            self.estimated = self._timed(self.first_estimate) if needed else 0.0
            self.first_estimate = None  # from now on: the timed figure, or the completed trials' costs
        return self.estimated

    def _refuse_if_none_can_start(self) -> None:
        """No trial of the study has started and none can: the total budget is smaller than one trial (known
        only once a budget in steps has been timed). Said as the user's error rather than an empty study."""
        totals = self.ledger.totals()
        if totals.trials or totals.total is None or self.n_trials == 0:
            return
        estimate = f", estimated at {self.estimated:.3g} s by timing a few steps" if self.estimated else ""
        raise UserError(f"no trial can start: one trial of {self.trial_budget}{estimate}, costs more than the "
                        f"{max(totals.left or 0.0, 0.0):.3g} s the total budget of {totals.total:g} s leaves; raise "
                        "[study] total_budget (or --total-budget) or lower trial_budget")

    @staticmethod
    def _timed(estimate: Callable[[], float]) -> float:
        """The timed estimate; 0 where the steps it times fail (a NaN loss, the model raising): the first trial
        meets the same failure and records it with its end reason, and what it spent is charged as usual."""
        try:
            return estimate()
        except TrialFailed:
            return 0.0
        except Exception as exc:
            if raised_in_model(exc) or raised_in(exc) is not None:
                return 0.0
            raise

    def run(self, trial: optuna.Trial, objective: TrialObjective) -> FrozenTrial:
        """Run one trial, record it, tell Optuna how it ended and settle its reservation; an error other than
        a failed trial fails the trial and is raised, as in ``study.optimize``."""
        started = time.perf_counter()
        outcome, error = None, None
        with _Heartbeat(self, trial, started) as heartbeat:
            try:
                plan = objective.begin(trial)
                self.record(trial, plan.attrs)
                outcome = objective.train(trial, plan)
                self.record(trial, self._with_artifacts(trial, outcome))
            except optuna.exceptions.UpdateFinishedTrialError:
                heartbeat.taken_over = True
            except DatabaseLost:
                raise  # nothing can be recorded: the trial is recovered like a dead worker's
            except BaseException as exc:  # noqa: BLE001 - told as FAIL, then raised
                error = exc
        if heartbeat.taken_over:
            return self._taken_over(trial)
        if outcome is None or error:
            outcome = self._failure(trial, error, (time.perf_counter() - started) * self.ledger.devices)
        for key, value in outcome.constraints.items():
            trial.set_constraint(key, value)
        retried = isinstance(error, KeyboardInterrupt)
        # Settled before Optuna is told: a worker that dies between the two leaves a RUNNING trial with a
        # settled cost row, which the next recovery fails and retries (see Recovery._fail_told_late).
        self.ledger.settle(self.reservations.pop(trial.number), trial.number, outcome.spent_seconds,
                           state_name(outcome.state), retried=retried)
        try:
            frozen = self.study.tell(trial, outcome.value if outcome.state == TrialState.COMPLETE else None,
                                     state=outcome.state, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            return self._taken_over(trial)
        if error is not None:
            raise error
        return frozen

    def _failure(self, trial: optuna.Trial, error: BaseException | None, spent: float) -> Outcome:
        """The outcome of a trial the objective did not finish: interrupted (retried by the next run), or
        failed by an error that is then raised. The objective's own clock stopped with it: what the
        worker saw is what the trial spent."""
        attrs: dict[str, Any] = {ATTR_SPENT: spent}
        if isinstance(error, KeyboardInterrupt):
            attrs.update({ATTR_END: INTERRUPTED, ATTR_DETAIL: f"stopped by {signal_name(error)}; the next "
                                                              "`automl run` retries it with the same parameters"})
        elif error is not None:
            attrs[ATTR_DETAIL] = f"{type(error).__name__}: {error}"[:500]
        with contextlib.suppress(Exception):  # the error that stopped the trial is the one to raise
            self.record(trial, attrs)
        return Outcome(TrialState.FAIL, spent, attrs)

    def _taken_over(self, trial: optuna.Trial) -> FrozenTrial:
        """Another worker took this one for dead (it was paused past the grace period) and ended its trial:
        drop this result, leave the ledger as that worker settled it, and go on."""
        self.reservations.pop(trial.number, None)
        print(f"automl: trial {trial.number} was taken over by another worker while this one was paused; "
              "its result here is dropped", file=sys.stderr)
        return frozen_trial(self.study, trial.number)

    def record(self, trial: optuna.Trial, attrs: dict[str, Any]) -> None:
        """Write the trial's user attributes, all in one transaction."""
        set_user_attrs(self.study, trial, attrs)

    def _with_artifacts(self, trial: optuna.Trial, outcome: Outcome) -> dict[str, Any]:
        if outcome.model is None or self.artifacts is None:
            return outcome.attrs
        return {**outcome.attrs, **save_trial_model(trial, self.artifacts, outcome.model, outcome.weights)}


class _Heartbeat:
    """While a trial runs, the ledger's heartbeat: the trial is alive, and has spent this much so far (what it
    is settled to if its worker dies). A beat that finds the trial no longer running means another
    worker took this one for dead."""

    def __init__(self, worker: Worker, trial: optuna.Trial, started: float) -> None:
        self.worker, self.trial, self.started = worker, trial, started
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.taken_over = False

    def beat(self) -> None:
        reservation = self.worker.reservations[self.trial.number]
        spent = (time.perf_counter() - self.started) * self.worker.ledger.devices
        if not self.worker.ledger.heartbeat(reservation, spent):
            self.taken_over = True

    def loop(self) -> None:
        while not self.stop.wait(self.worker.interval):
            with contextlib.suppress(Exception):  # a lost beat is retried at the next one
                self.beat()

    def __enter__(self) -> "_Heartbeat":
        self.thread = threading.Thread(target=self.loop, name="automl-heartbeat", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


__all__ = ["TrialObjective", "Worker"]
