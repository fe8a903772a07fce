"""Run a study: validate everything first, then let Optuna search until the budget or n_trials is spent."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial, TrialState

from automl.budget import Budget
from automl.errors import TrialFailed, UserError
from automl.host import Host
from automl.space import TrickSettings
from automl.storage import mask_url, open_storage, resolve_url
from automl.storage.artifacts import artifact_store
from automl.storage.models import StudySourceModel, session_scope
from automl.storage.schema import ensure_schema
from automl.study.config import StudyFile, study_tricks
from automl.study.objective import ATTR_SPENT, Objective
from automl.train.data import Dataset, load_dataset
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


def prepare(study_file: StudyFile, host: Host, overrides: Overrides = Overrides()) -> PreparedStudy:
    """Validate the study against the installed plugins and load its data; touches no database."""
    config = study_file.config
    tricks, settings = study_tricks(study_file, host)
    trial_budget = Budget.parse(overrides.trial_budget) if overrides.trial_budget else config.study.trial_budget
    total_budget = Budget.parse(overrides.total_budget) if overrides.total_budget else config.study.total_budget
    if total_budget is not None and total_budget.unit != "seconds":
        raise UserError(f"--total-budget must be device time such as '10m', got '{total_budget}'")
    device = resolve_device(overrides.device or "auto")
    task = config.task
    data = load_dataset(task.dataset, root=task.data_root, val_fraction=task.val_fraction,
                        seed=config.study.seed, device=device, download=task.download,
                        verify=task.verify, **task.dataset_args)
    return PreparedStudy(
        study_file=study_file, name=overrides.study_name or config.study.name,
        storage_url=resolve_url(overrides.storage, config.study.storage), tricks=tricks, settings=settings,
        data=data, device=device, trial_budget=trial_budget, total_budget=total_budget,
        n_trials=overrides.n_trials or config.study.n_trials,
        seed=config.study.seed if overrides.seed is None else overrides.seed,
        plugins=[{"trick": name, "plugin": host.tricks[name].plugin, "source": host.tricks[name].source}
                 for name in sorted(tricks)])


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but no CUDA GPU is visible; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


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


def spent_seconds(study: optuna.Study) -> float:
    """Device-seconds spent by the study's finished trials, over every worker that ran them."""
    return sum(t.user_attrs.get(ATTR_SPENT, 0.0) for t in study.get_trials(deepcopy=False)
               if t.state.is_finished())


class BudgetGuard:
    """Stops the study before a trial that would not fit in what is left of ``total_budget``.

    A time-budgeted trial costs its budget plus evaluation; a trial budgeted in steps or
    epochs is estimated from the mean of those that already ran.
    """

    def __init__(self, total: Budget | None, trial: Budget) -> None:
        self.total = total
        self.trial = trial

    def next_trial_cost(self, study: optuna.Study) -> float:
        costs = [t.user_attrs[ATTR_SPENT] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if ATTR_SPENT in t.user_attrs]
        mean = sum(costs) / len(costs) if costs else 0.0
        return max(self.trial.amount, mean) if self.trial.unit == "seconds" else mean

    def left(self, study: optuna.Study) -> float:
        return math.inf if self.total is None else self.total.amount - spent_seconds(study)

    def fits(self, study: optuna.Study) -> bool:
        left = self.left(study)
        return left > 0 and left >= self.next_trial_cost(study)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not self.fits(study):
            study.stop()


def create_study(prepared: PreparedStudy) -> optuna.Study:
    """Create or resume the study; automl's tables are checked (or created) before anything is written."""
    ensure_schema(prepared.storage_url)
    storage = open_storage(prepared.storage_url)
    config = prepared.study_file.config
    study = optuna.create_study(
        storage=storage, study_name=prepared.name, direction="minimize", load_if_exists=True,
        sampler=make_sampler(config.study.sampler, prepared.seed),
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
    return study


def run_study(prepared: PreparedStudy, study: optuna.Study | None = None, *,
              on_trial: Callable[[optuna.Study, FrozenTrial], Any] | None = None) -> optuna.Study:
    """Optimise until the study's budget or trial count is spent; creates or resumes the study if not given."""
    study = study or create_study(prepared)
    guard = BudgetGuard(prepared.total_budget, prepared.trial_budget)
    callbacks: list[Callable] = [guard]
    if prepared.n_trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(prepared.n_trials, states=None))
        if len(study.trials) >= prepared.n_trials:
            return study
    if on_trial is not None:
        callbacks.append(on_trial)
    if not guard.fits(study):
        return study
    artifacts = Path(prepared.study_file.config.study.artifacts)
    objective = Objective(config=prepared.study_file.config, data=prepared.data, tricks=prepared.tricks,
                          settings=prepared.settings, device=prepared.device, budget=prepared.trial_budget,
                          artifacts=artifact_store(artifacts), teacher_cache=artifacts / ".teachers")
    study.optimize(objective, catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=False)
    return study


__all__ = ["Overrides", "PreparedStudy", "prepare", "run_study", "spent_seconds", "mask_url"]
