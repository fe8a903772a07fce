"""Recovery of the trials whose worker died or was stopped: fail them, settle their time, retry them once.

Every worker runs :meth:`Recovery.run` before it reserves its next trial. Each step reads the state it
mends before it mends it, so a recovery that dies half-way is finished by the next one, and running
it twice changes nothing; on PostgreSQL one worker at a time runs it (an advisory lock, released
with its connection if its holder dies), and a retry is queued only under a claim in the failed trial's
cost row, which holds where the lock was lost with a cut connection. Liveness is the ledger's: a trial is
alive while its cost row's heartbeat, dated by the database's clock, is younger than the grace period.
"""

from __future__ import annotations

import sys
import time

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from automl.storage.ledger import Ledger
from automl.storage.locks import advisory_lock
from automl.storage.optuna_adapter import fail_if_waiting, frozen_trial, set_user_attrs, study_engine, trial_id
from automl.study.resume import drop_checkpoint
from automl.records import (ATTR_DETAIL, ATTR_END, ATTR_REPEAT_OF, FAILED, STATE_NAMES, SYS_RETRY_HISTORY,
                            SYS_RETRY_OF, end_reason, retry_history, state_name)

WORKER_DIED = "worker_died"
"""The ``end_reason`` of a trial whose worker stopped sending heartbeats (killed, crashed, frozen)."""
INTERRUPTED = "interrupted"
"""The ``end_reason`` of a trial stopped by Ctrl-C or SIGTERM: always retried by the next run."""
NOT_RETRIED = "not_retried"
"""The ``end_reason`` of a retry that could not run: the study's budget was spent first."""
DUPLICATE_RETRY = "duplicate_retry"
"""The ``end_reason`` of a second retry of one trial, queued by two recoveries at once and never run."""
MAX_RETRY = 1
"""A dead worker's trial is retried once (the trial itself may be what kills its worker); an
interrupted one every time, as stopping it said nothing about it."""


def will_retry(trial: FrozenTrial) -> bool:
    """Whether a failed trial is run again with the same parameters and seed."""
    reason = end_reason(trial)
    return reason == INTERRUPTED or (reason == WORKER_DIED and len(retry_history(trial)) < MAX_RETRY)


class Recovery:
    """The recovery of one study, as run by one of its workers."""

    def __init__(self, study: optuna.Study, ledger: Ledger, grace: float, every: float = 0.0,
                 artifacts: FileSystemArtifactStore | None = None) -> None:
        self.study, self.ledger, self.grace = study, ledger, grace
        self.artifacts = artifacts
        """Where the trials' checkpoints are: a trial that will never run again has its checkpoint removed."""
        self.every = every
        """Seconds between two recoveries by :meth:`run_due`: nothing goes stale faster than a heartbeat."""
        self.last: float | None = None

    def run_due(self) -> None:
        """:meth:`run`, if it has not run in the last ``every`` seconds (it costs a few statements)."""
        if self.last is None or time.monotonic() - self.last >= self.every:
            self.run()

    def run(self) -> None:
        """Fail the dead workers' trials, settle every cost row left open, and enqueue the retries."""
        self.last = time.monotonic()
        with advisory_lock(study_engine(self.study), f"automl-recovery:{self.study.study_name}"):
            self.ledger.reclaim(self.grace)
            self._settle_dead()
            self._fail_told_late()
            self._fail_orphans()
            self._enqueue_retries()

    def _settle_dead(self) -> None:
        """Cost rows whose heartbeat stopped: fail their trial if it still runs, then settle the row to the
        seconds its last heartbeat recorded."""
        for number in self.ledger.stale(self.grace):
            trial = frozen_trial(self.study, number)
            if trial.state == TrialState.RUNNING:
                trial = self._fail(trial, WORKER_DIED, f"its worker sent no heartbeat for {self.grace:g} s "
                                                       "(killed, crashed or frozen)") or frozen_trial(self.study, number)
            state = trial.state if trial.state.name in STATE_NAMES else TrialState.FAIL
            retried = state == TrialState.FAIL and will_retry(trial)
            self.ledger.settle_stale(number, state_name(state), retried=retried)
            if not retried:
                drop_checkpoint(self.artifacts, trial)

    def _fail_told_late(self) -> None:
        """RUNNING trials whose cost row was settled ``grace`` seconds ago: their worker settled them and died
        before telling Optuna. Their result is lost: fail them, and free their place for the retry."""
        running = {t.number: t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        for number in self.ledger.settled_among(list(running), self.grace):
            trial = self._fail(running[number], WORKER_DIED, "its worker died between settling the trial's time "
                                                              "and telling Optuna how it ended")
            if trial is not None:
                self.ledger.resettle_failed(number, retried=will_retry(trial))

    def _fail_orphans(self) -> None:
        """RUNNING trials that no reservation was ever tied to: their worker died between creating the
        trial and its first heartbeat. Only when no worker is between those two steps right now."""
        # In this order: a live worker that created one of these trials either holds a fresh reservation
        # still (then wait), or had tied it to its trial before `attached` is read.
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running or self.ledger.waiting_for_trial(self.grace):
            return
        attached = self.ledger.attached()
        for trial in running:
            # The cost row is the claim: one recovery fails each orphan, and no worker can tie it after.
            if trial.number not in attached and self.ledger.record_unreserved(trial.number, FAILED):
                self._fail(trial, WORKER_DIED, "its worker died before the trial's first heartbeat")

    def _enqueue_retries(self, trials: list[FrozenTrial] | None = None) -> None:
        """Queue the retry of each failed trial that will run again and has none; ``trials``: the study's, as
        this recovery read them (another may have queued a retry since: the claim decides)."""
        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        self._close_duplicate_retries(trials)
        retried = {t.system_attrs.get(SYS_RETRY_OF) for t in trials}
        for trial in trials:
            if trial.state == TrialState.FAIL and trial.number not in retried and will_retry(trial):
                self._enqueue(trial)

    def _close_duplicate_retries(self, trials: list[FrozenTrial]) -> None:
        """A failed trial runs again once. Its retry is queued under a claim (``Ledger.claim_retry``), but a
        recovery that took a claim and stalled past the grace period before queueing (its claim then taken
        again) queues a second one: the retries past the one kept (one already taken by a worker, else the
        first queued) are failed while they still wait, and given a cost row; the kept one holds the trial's
        place among ``n_trials``."""
        by_failed: dict[int, list[FrozenTrial]] = {}
        for trial in trials:
            if SYS_RETRY_OF in trial.system_attrs:
                by_failed.setdefault(trial.system_attrs[SYS_RETRY_OF], []).append(trial)
        for failed, retries in by_failed.items():
            kept = min(retries, key=lambda t: (t.state == TrialState.WAITING, t.number))
            for extra in retries:
                if extra is kept or extra.state != TrialState.WAITING:
                    continue
                self._close_retry(extra, DUPLICATE_RETRY, f"a second retry of trial {failed}, queued by two "
                                  f"recoveries at once; trial {kept.number} runs it", recount=False)

    def _enqueue(self, trial: FrozenTrial) -> None:
        """Queue ``trial`` again, as Optuna's heartbeat retry does: same parameters, and the chain of
        trials it re-runs (the first of which gives the retry its training seed); only under this recovery's
        claim on it, which no other recovery holds at once (the lock may have been lost with its connection)."""
        if self.ledger.claim_retry(trial.number, self.grace):
            self._add_retry(trial)

    def _add_retry(self, trial: FrozenTrial) -> None:
        # Not by calling Optuna's retry callback: it copies the failed trial's user attributes (its end
        # reason, time spent, checkpoint) into the retry, and its failed_trial names the first of the chain,
        # where the retries read the trial they directly re-run (its checkpoint; whether it was retried).
        distributions: dict[str, BaseDistribution] = trial.distributions
        self.study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=distributions,
            user_attrs={k: trial.user_attrs[k] for k in (ATTR_REPEAT_OF,) if k in trial.user_attrs},
            system_attrs={SYS_RETRY_OF: trial.number, SYS_RETRY_HISTORY: [*retry_history(trial), trial.number]}))

    def close_waiting(self) -> list[int]:
        """The study is over (no budget for another trial, nothing running): the retries still waiting will
        never run, so fail them with the reason; the numbers of those failed."""
        if self.ledger.totals().reserved > 0:
            return []  # a running trial may leave room for them: its worker closes them when it is done
        closed = []
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if SYS_RETRY_OF not in trial.system_attrs:
                continue
            if self._close_retry(trial, NOT_RETRIED, f"retry of trial {trial.system_attrs[SYS_RETRY_OF]} not run: "
                                 "the study's budget was spent first; raise total_budget or n_trials and run again "
                                 "to run it", recount=True):
                closed.append(trial.number)
                drop_checkpoint(self.artifacts, frozen_trial(self.study, trial.system_attrs[SYS_RETRY_OF]))
        if closed:
            print(f"automl: retries {', '.join(map(str, closed))} were not run: the study's budget was spent "
                  "first", file=sys.stderr)
        return closed

    def _close_retry(self, retry: FrozenTrial, reason: str, detail: str, *, recount: bool) -> bool:
        """Fail a retry that will never run, if no worker has taken it yet, and give it a cost row; whether it
        was. ``recount``: the trial it re-runs takes its place among ``n_trials`` back (no retry holds it)."""
        set_user_attrs(self.study, trial_id(retry), {ATTR_END: reason, ATTR_DETAIL: detail})
        if not fail_if_waiting(self.study, trial_id(retry)):
            return False
        self.ledger.record_unreserved(retry.number, FAILED, recount=recount)
        return True

    def _fail(self, trial: FrozenTrial, reason: str, detail: str) -> FrozenTrial | None:
        """Fail a RUNNING trial with its reason: the failed trial, or None when it had ended meanwhile (its
        worker came back, or another recovery failed it first)."""
        try:
            set_user_attrs(self.study, trial_id(trial), {ATTR_END: reason, ATTR_DETAIL: detail})
            self.study.tell(trial.number, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        return frozen_trial(self.study, trial.number)


__all__ = ["DUPLICATE_RETRY", "INTERRUPTED", "MAX_RETRY", "NOT_RETRIED", "Recovery", "WORKER_DIED", "will_retry"]
