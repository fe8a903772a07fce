"""Run a study: validate everything first, then let Optuna search until the budget or n_trials is spent."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial, TrialState

from automl.budget import Budget
from automl.devices import resolve_device
from automl.errors import TrialFailed, UserError
from automl.host import Host
from automl.space import TrickSettings
from automl.storage import open_storage, resolve_url
from automl.storage.artifacts import artifact_store
from automl.storage.ledger import Ledger
from automl.storage.models import StudySourceModel, session_scope
from automl.storage.schema import ensure_schema
from automl.study.config import StudyFile, study_tricks
from automl.study.objective import ATTR_SPENT, Objective
from automl.train.data import Dataset
from automl.trick import Trick


@dataclass
class Overrides:
    """What the command line changes over the study file."""

    storage: str | None = None
    study_name: str | None = None
    n_trials: int | None = None
    total_budget: str | None = None
    trial_budget: str | None = None
    device: str | None = None
    seed: int | None = None


@dataclass
class PreparedStudy:
    """A study checked end to end (file, tricks, data, storage URL) before anything is written."""

    study_file: StudyFile
    name: str
    storage_url: str
    tricks: dict[str, type[Trick]]
    settings: dict[str, TrickSettings]
    data: Dataset
    device: torch.device
    trial_budget: Budget
    total_budget: Budget | None
    n_trials: int | None
    seed: int
    plugins: list[dict[str, str]] = field(default_factory=list)
    """Where each of the study's tricks came from, recorded with the study's source."""
    sampler_seed: int | None = None
    """The sampler's seed when not ``seed`` (each worker of ``--workers N`` has its own)."""


def prepare(study_file: StudyFile, host: Host, overrides: Overrides = Overrides(), *,
            data_on_cpu: bool = False) -> PreparedStudy:
    """Validate the study against the installed plugins and load its data; touches no database.

    ``data_on_cpu``: load the data to the CPU whatever the device (a parent of worker processes only
    checks that the data loads; each worker loads its own copy to its own device).
    """
    config = study_file.config
    tricks, settings = study_tricks(study_file, host)
    trial_budget = Budget.parse(overrides.trial_budget) if overrides.trial_budget else config.study.trial_budget
    total_budget = Budget.parse(overrides.total_budget) if overrides.total_budget else config.study.total_budget
    if total_budget is not None and total_budget.unit != "seconds":
        raise UserError(f"--total-budget must be device time such as '10m', got '{total_budget}'")
    device = resolve_device(overrides.device or "auto")
    data = config.task.load_data(seed=config.study.seed, device=torch.device("cpu") if data_on_cpu else device)
    return PreparedStudy(
        study_file=study_file, name=overrides.study_name or config.study.name,
        storage_url=resolve_url(overrides.storage, config.study.storage), tricks=tricks, settings=settings,
        data=data, device=device, trial_budget=trial_budget, total_budget=total_budget,
        n_trials=overrides.n_trials or config.study.n_trials,
        seed=config.study.seed if overrides.seed is None else overrides.seed,
        plugins=[{"trick": name, "plugin": host.tricks[name].plugin, "source": host.tricks[name].source}
                 for name in sorted(tricks)])


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    # Optuna marks brute force and GP experimental; the choice was the study file's, so no warning.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "bruteforce": lambda: optuna.samplers.BruteForceSampler(seed=seed),
    }[name]()


def make_pruner(name: str, rungs: int) -> optuna.pruners.BasePruner:
    # Steps reported to the pruner are rung indices 0..rungs-1.
    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=rungs, reduction_factor=3),
        "none": optuna.pruners.NopPruner,
    }[name]()


def rdb_storage(study: optuna.Study) -> optuna.storages.RDBStorage:
    """The RDB storage under a study (Optuna wraps one given as a URL in a cache)."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def study_engine(study: optuna.Study) -> sqlalchemy.Engine:
    """The SQLAlchemy engine of a study in an RDB storage."""
    return rdb_storage(study).engine


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
        retried = len(trial.system_attrs.get("retry_history", [])) < self.max_retry
        Ledger(study_engine(study), study.study_name).settle_stale(trial.number, retried=retried)
        self.retry(study, trial)


def create_study(prepared: PreparedStudy) -> optuna.Study:
    """Create or resume the study; automl's tables are checked (or created) before anything is written,
    and the study's ledger row is opened with its total budget."""
    ensure_schema(prepared.storage_url)
    config = prepared.study_file.config
    storage = open_storage(prepared.storage_url, heartbeat_interval=config.study.heartbeat_interval,
                           grace_period=config.study.grace_period,
                           heartbeat_stale_trial_callback=SettleStaleTrial())
    study = optuna.create_study(
        storage=storage, study_name=prepared.name, direction="minimize", load_if_exists=True,
        sampler=make_sampler(config.study.sampler,
                             prepared.seed if prepared.sampler_seed is None else prepared.sampler_seed),
        pruner=make_pruner(config.study.pruner, config.train.rungs))
    if "study_file" not in study.user_attrs:
        study.set_user_attr("study_file", prepared.study_file.path)
        study.set_user_attr("dataset", config.task.dataset)
        study.set_user_attr("model", config.task.model)
    try:
        with session_scope(storage.engine) as session:
            StudySourceModel.record(session, prepared.name, prepared.study_file.path, prepared.study_file.text,
                                    prepared.plugins)
    except sqlalchemy.exc.IntegrityError:
        pass  # another worker starting the same study recorded the same text first
    Ledger(storage.engine, prepared.name).open(
        prepared.total_budget.amount if prepared.total_budget is not None else None)
    return study


def run_study(prepared: PreparedStudy, study: optuna.Study | None = None, *,
              on_trial: Callable[[optuna.Study, FrozenTrial], Any] | None = None) -> optuna.Study:
    """Optimise until the study's budget or trial count is spent; creates or resumes the study if not given."""
    study = study or create_study(prepared)
    artifacts = Path(prepared.study_file.config.study.artifacts)
    objective = Objective(config=prepared.study_file.config, data=prepared.data, tricks=prepared.tricks,
                          settings=prepared.settings, device=prepared.device, budget=prepared.trial_budget,
                          artifacts=artifact_store(artifacts), teacher_cache=artifacts / ".teachers",
                          seed=prepared.seed)
    worker = Worker(study, Ledger(study_engine(study), study.study_name, device=str(prepared.device)),
                    prepared.trial_budget, prepared.n_trials)
    while (trial := worker.next_trial()) is not None:
        frozen = worker.run(trial, objective)
        if on_trial is not None:
            on_trial(study, frozen)
    return study


_COST_STATE = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}


class Worker:
    """One worker's loop around a study: reserve, ask, run, tell, settle; many may share a study.

    The trial's device time and its place among ``n_trials`` are reserved in the ledger, in one
    conditional UPDATE, before Optuna creates the trial: a trial that would not fit is never
    started, and racing workers on any machine never take the study past either bound.
    """

    def __init__(self, study: optuna.Study, ledger: Ledger, trial_budget: Budget, n_trials: int | None) -> None:
        self.study = study
        self.ledger = ledger
        self.trial_budget = trial_budget
        self.n_trials = n_trials
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

    def run(self, trial: optuna.Trial, objective: Callable[[optuna.Trial], float]) -> FrozenTrial:
        """Run one trial, tell Optuna how it ended and settle its reservation; other errors than
        TrialFailed fail the trial and are raised, as in ``study.optimize``."""
        started = time.perf_counter()
        value, state, error = None, TrialState.FAIL, None
        with _Heartbeat(self, trial, started):
            try:
                value, state = objective(trial), TrialState.COMPLETE
            except optuna.TrialPruned:
                state = TrialState.PRUNED
            except TrialFailed:
                pass
            except BaseException as exc:  # noqa: BLE001 - told as FAIL, then raised
                error = exc
        # The objective records the device time it spent; an objective that records none is settled
        # to the worker's own clock.
        spent = trial.user_attrs.get(ATTR_SPENT, time.perf_counter() - started)
        frozen = self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state,
                                 skip_if_finished=True)
        self.ledger.settle(self.reservations.pop(trial.number), trial.number, spent,
                           _COST_STATE.get(frozen.state, "failed"))
        if error is not None:
            raise error
        return frozen


class _Heartbeat:
    """While a trial runs: Optuna's heartbeat (so a dead worker's trial is failed) and the ledger's
    (what the trial has spent so far, what it is settled to if its worker dies)."""

    def __init__(self, worker: Worker, trial: optuna.Trial, started: float) -> None:
        self.worker, self.trial, self.started = worker, trial, started
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def beat(self) -> None:
        self.worker.storage.record_heartbeat(self.trial._trial_id)
        self.worker.ledger.heartbeat(self.worker.reservations[self.trial.number], self.trial.number,
                                     time.perf_counter() - self.started)

    def loop(self) -> None:
        while not self.stop.wait(self.worker.interval):
            with contextlib.suppress(Exception):  # a lost beat is retried at the next one
                self.beat()

    def __enter__(self) -> "_Heartbeat":
        if self.worker.interval:
            self.worker.storage.record_heartbeat(self.trial._trial_id)
            self.thread = threading.Thread(target=self.loop, name="automl-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()


__all__ = ["Overrides", "PreparedStudy", "SettleStaleTrial", "Worker", "create_study", "prepare", "run_study",
           "study_engine"]
