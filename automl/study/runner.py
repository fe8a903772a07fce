"""Run a study: validate everything first, then create or resume it, then let its workers search until the
budget or n_trials is spent."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial

from automl.budget import Budget
from automl.devices import resolve_device
from automl.host import Host
from automl.space import TrickSettings
from automl.storage import open_storage, resolve_url
from automl.storage.artifacts import artifact_store
from automl.storage.ledger import Ledger
from automl.storage.models import StudySourceModel, session_scope
from automl.storage.optuna_adapter import study_engine
from automl.storage.schema import ensure_schema
from automl.study import records
from automl.study.config import StudyFile
from automl.study.objective import Objective
from automl.study.tricks import study_tricks
from automl.study.worker import SettleStaleTrial, Worker
from automl.train.data import Dataset
from automl.trick import Trick

BEST_MODEL_CACHE = ".best-models"
"""The folder under the artifact store's where trials download the study's best model when a trick asks."""


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
    total_budget = (Budget.parse(overrides.total_budget).require_device_time("--total-budget")
                    if overrides.total_budget else config.study.total_budget)
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
    with warnings.catch_warnings():
        # Optuna marks brute force and GP experimental; the choice was the study file's, so no warning.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _SAMPLERS[name](seed)


_SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "bruteforce": lambda seed: optuna.samplers.BruteForceSampler(seed=seed),
}


def make_pruner(name: str, rungs: int) -> optuna.pruners.BasePruner:
    # Steps reported to the pruner are rung indices 0..rungs-1.
    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=rungs, reduction_factor=3),
        "none": optuna.pruners.NopPruner,
    }[name]()


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
    if records.STUDY_FILE not in study.user_attrs:
        study.set_user_attr(records.STUDY_FILE, prepared.study_file.path)
        study.set_user_attr(records.STUDY_DATASET, config.task.dataset)
        study.set_user_attr(records.STUDY_MODEL, config.task.model)
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
    store = artifact_store(artifacts)
    objective = Objective(config=prepared.study_file.config, data=prepared.data, tricks=prepared.tricks,
                          settings=prepared.settings, device=prepared.device, budget=prepared.trial_budget,
                          artifacts=store, best_model_cache=artifacts / BEST_MODEL_CACHE, seed=prepared.seed)
    worker = Worker(study, Ledger(study_engine(study), study.study_name, device=str(prepared.device)),
                    prepared.trial_budget, prepared.n_trials, artifacts=store)
    while (trial := worker.next_trial()) is not None:
        frozen = worker.run(trial, objective)
        if on_trial is not None:
            on_trial(study, frozen)
    return study


__all__ = ["Overrides", "PreparedStudy", "create_study", "make_pruner", "make_sampler", "prepare", "run_study"]
