"""Run a study: validate everything first, then create or resume it, then let its workers search until the
budget or n_trials is spent."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import optuna
import sqlalchemy.exc
import torch
from optuna.trial import FrozenTrial, TrialState

from automl.budget import Budget
from automl.devices import resolve_device
from automl.errors import UserError
from automl.host import Host
from automl.interrupts import at_checkpoints
from automl.space import TrickSettings
from automl.storage import open_storage, resolve_url
from automl.storage.artifacts import artifact_store
from automl.storage.ledger import Ledger
from automl.storage.models import StudySourceModel, session_scope
from automl.storage.retry import with_retry
from automl.storage.optuna_adapter import study_engine
from automl.storage.schema import ensure_schema
from automl import records
from automl.study.config import Seed, StudyConfig, StudyFile, StudyName, StudySection, check_option
from automl.study.incumbent import Intensifier
from automl.study.objective import Objective
from automl.study.pareto import ParetoPruner
from automl.study.pruning import ETA, NoiseAwarePruner
from automl.study.tricks import study_tricks
from automl.study.worker import Worker
from automl.train.datasets import dataset_source
from automl.train.splits import Dataset
from automl.train.distributed import TrialGroup
from automl.train.models import check_output
from automl.run import TrialContext
from automl.trick import Trick

MODEL_KEY = "model:"
"""The prefix of the model's entry among the study's plugin sources (``records.STUDY_PLUGINS``): ``model:resnet20``."""
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
    accept_task_change: bool = False
    accept_plugin_change: bool = False
    """Resume even when a trick now comes from another plugin or version than the study's trials had it from."""


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
    session: int = 0
    """This ``automl run``'s number among the study's runs (set by ``create_study``, or handed to workers)."""
    worker: int | None = None
    """This process's index among ``--workers N``; None for a run in one process."""
    accept_task_change: bool = False
    """Resume the study although its file now names another data set or model."""
    accept_plugin_change: bool = False
    model_origin: dict[str, str] = field(default_factory=dict)
    """Where the task's model comes from (``ModelSource.origin``): recorded with the study's plugins."""
    group: TrialGroup | None = None
    """The ranks that train each trial together (``--gpus-per-trial K``); None on one device."""
    search: bool = True
    """False for the cells of a comparison: fixed recipes trained at the budget alone, never pruned or repeated."""


def prepare(study_file: StudyFile, host: Host, overrides: Overrides = Overrides(), *,
            data_on_cpu: bool = False) -> PreparedStudy:
    """Validate the study against the installed plugins and load its data; touches no database.

    ``data_on_cpu``: load the data to the CPU whatever the device (a parent of worker processes only
    checks that the data loads; each worker loads its own copy to its own device).
    """
    config = study_file.config
    tricks, settings = study_tricks(study_file, host)
    name = config.study.name if overrides.study_name is None else check_option(StudyName, overrides.study_name,
                                                                                "--study-name")
    seed = config.study.seed if overrides.seed is None else check_option(Seed, overrides.seed, "--seed")
    trial_budget, total_budget = _budgets(config.study, overrides)
    _check_artifacts(study_file)
    device = resolve_device(overrides.device or "auto")
    data = config.task.load_data(seed=config.study.seed, device=torch.device("cpu") if data_on_cpu else device,
                                 host=host, folder=Path(study_file.path).parent)
    model_origin = _check_model(study_file, data, host)
    return PreparedStudy(
        study_file=study_file, name=name,
        storage_url=resolve_url(overrides.storage, config.study.storage), tricks=tricks, settings=settings,
        data=data, device=device, trial_budget=trial_budget, total_budget=total_budget,
        n_trials=overrides.n_trials or config.study.n_trials, seed=seed,
        accept_task_change=overrides.accept_task_change, accept_plugin_change=overrides.accept_plugin_change,
        plugins=[*({"trick": name, "plugin": host.tricks[name].plugin, "source": host.tricks[name].source}
                   for name in sorted(tricks)), _dataset_source(config.task.dataset, host)],
        model_origin=model_origin)


def _dataset_source(name: str, host: Host) -> dict[str, str]:
    """Where the study's data set comes from, recorded with the study's source as its tricks' are."""
    _, source = dataset_source(name, host=host)
    return {"dataset": name, "plugin": host.datasets[name].plugin if name in host.datasets else name,
            "source": source}


def _budgets(study: StudySection, overrides: Overrides) -> tuple[Budget, Budget | None]:
    """The trial and total budgets, the command line's over the file's; a trial must fit in the total."""
    trial = _option_budget(overrides.trial_budget, "--trial-budget") or study.trial_budget
    total = _option_budget(overrides.total_budget, "--total-budget")
    total = total.require_device_time("--total-budget") if total is not None else study.total_budget
    names = ("--trial-budget" if overrides.trial_budget else "trial_budget",
             "--total-budget" if overrides.total_budget else "total_budget")
    return trial.require_within(total, names), total


def _option_budget(text: str | None, flag: str) -> Budget | None:
    if not text:
        return None
    try:
        return Budget.parse(text)
    except UserError as exc:
        raise UserError(f"{flag}: {exc}") from None


def _check_artifacts(study_file: StudyFile) -> None:
    """The artifact store's folder can be made and written: the first completed trial writes there."""
    folder = Path(study_file.config.study.artifacts)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise study_file.error("[study] artifacts", f"{str(folder)!r}: {str(existing)!r} is not a folder; "
                               "give a folder (it is made when missing)")
    if not os.access(existing, os.W_OK):
        raise study_file.error("[study] artifacts", f"{str(folder)!r}: {str(existing)!r} is read-only; "
                               "give a folder you can write")


def _check_model(study_file: StudyFile, data: Dataset, host: Host) -> dict[str, str]:
    """Build the task's model once and score one batch with it, so that a model that does not import, does not
    build or gives scores of the wrong shape is refused before the study is created; returns its origin."""
    task = study_file.config.task
    with torch.random.fork_rng(devices=[]):  # trials seed torch themselves; this build leaves no trace
        try:
            source = task.model_source(host)
            model = source.build(in_channels=data.input_shape[0], num_classes=data.num_classes, **task.model_args)
            check_output(model, task.model, data.input_shape, data.num_classes)
        except UserError as exc:
            raise study_file.error("[task]", str(exc)) from None
    return source.origin


def unavailable_for_model(prepared: PreparedStudy) -> dict[str, str]:
    """The study's tricks that its model makes unavailable (zero_gamma on a network without residual blocks),
    each with the reason: what ``automl run`` says once when the study starts."""
    data = prepared.data
    plain = TrialContext(prepared.name, 0, lambda: None)
    knowing = dataclasses.replace(plain, model=prepared.study_file.config.task.probe_model(data.input_shape[0],
                                                                                          data.num_classes))
    found = {}
    for name, cls in sorted(prepared.tricks.items()):
        options = dict(prepared.settings[name].options) if name in prepared.settings else {}
        reason = cls.unavailable(knowing, options)
        if reason and not cls.unavailable(plain, options):
            found[name] = reason
    return found


def make_sampler(name: str, seed: int, *, constrained: bool = False) -> optuna.samplers.BaseSampler:
    """The study's sampler; ``constrained``: TPE and GP read each trial's constraints (``Trial.set_constraint``,
    from ``[study] constraints``) and sample where the feasible trials are."""
    with warnings.catch_warnings():
        # Optuna marks brute force and GP experimental; the choice was the study file's, so no warning.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if constrained and name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constraints_func=_constraints)
        if constrained and name == "gp":
            return optuna.samplers.GPSampler(seed=seed, constraints_func=_constraints)
        return _SAMPLERS[name](seed)


def _constraints(trial: FrozenTrial) -> list[float]:
    """A trial's constraint values as a constrained sampler reads them (feasible at zero or less)."""
    return [value for _, value in sorted(trial.constraints.items())]


_SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "bruteforce": lambda seed: GridSampler(seed=seed),
}


class GridSampler(optuna.samplers.BruteForceSampler):
    """Optuna's brute-force sampler for automl's ask-and-tell loop: once every combination has run, it says so
    (``exhausted``) rather than call ``Study.stop``, which Optuna allows only inside ``study.optimize``."""

    exhausted = False

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        stop = study.stop

        def exhaust() -> None:
            self.exhausted = True
            with contextlib.suppress(RuntimeError):  # outside study.optimize: automl's loop reads `exhausted`
                stop()

        study.stop = exhaust  # type: ignore[method-assign]  # what the grid's end calls
        try:
            super().after_trial(study, trial, state, values)
        finally:
            del study.stop  # back to the class's method


def make_pruner(name: str, rungs: int, *, val_size: int | None = None, eta: int = ETA,
                objectives: Sequence[str] = ("error",)) -> optuna.pruners.BasePruner:
    """The study's pruner; steps reported to it are rung indices 0..rungs-1. ``val_size``: the images a
    validation error is a fraction of, for the noise-aware pruners (``automl.study.pruning``). With several
    ``objectives``, ``asha`` and ``median`` rank non-dominated fronts (``automl.study.pareto``: the best 1/eta,
    or the better half)."""
    if len(objectives) > 1 and name != "none":
        return ParetoPruner(val_size, eta=eta if name == "asha" else 2, objectives=objectives)
    return {
        "asha": lambda: NoiseAwarePruner("asha", val_size, eta=eta),
        "median": lambda: NoiseAwarePruner("median", val_size),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=rungs, reduction_factor=eta),
        "none": optuna.pruners.NopPruner,
    }[name]()


def create_study(prepared: PreparedStudy, *, new_session: bool = True) -> optuna.Study:
    """Create or resume the study; automl's tables are checked (or created) before anything is written,
    and the study's ledger row is opened with its total budget.

    ``new_session``: this is an ``automl run`` of its own (not one of its ``--workers``), which takes the
    study's next session number (``prepared.session``); the sampler is seeded by it (see ``sampler_seed``).
    """
    ensure_schema(prepared.storage_url)
    config = prepared.study_file.config
    storage = open_storage(prepared.storage_url)
    _refuse_another_task(storage, prepared)
    _refuse_other_objectives(storage, prepared)
    sources = _plugin_sources(storage, prepared)
    ledger = Ledger(storage.engine, prepared.name)
    ledger.open(prepared.total_budget.amount if prepared.total_budget is not None else None)
    if new_session:
        prepared.session = ledger.start_session()
    objectives = config.study.objectives
    study = optuna.create_study(
        storage=storage, study_name=prepared.name, directions=["minimize"] * len(objectives), load_if_exists=True,
        sampler=make_sampler(config.study.sampler, sampler_seed(prepared.seed, prepared.session, prepared.worker),
                             constrained=bool(config.study.constraints)),
        pruner=make_pruner(config.study.pruner, study_rungs(config), val_size=len(prepared.data.val),
                           eta=config.study.eta, objectives=objectives))
    if len(objectives) > 1 and records.STUDY_OBJECTIVES not in study.user_attrs:
        study.set_user_attr(records.STUDY_OBJECTIVES, list(objectives))
    if records.STUDY_FILE not in study.user_attrs:
        study.set_user_attr(records.STUDY_FILE, prepared.study_file.path)
    for _, key, value in _task_identity(config.task):
        if key not in study.user_attrs:  # a study from before automl kept this part starts keeping it now
            study.set_user_attr(key, value)
    if records.STUDY_MODEL_INPUT not in study.user_attrs:
        study.set_user_attr(records.STUDY_MODEL_INPUT, [prepared.data.input_shape[0], prepared.data.num_classes])
    study.set_user_attr(records.STUDY_DATA_LOAD, {"loader": prepared.data.loader,
                                                  "decode_seconds": round(prepared.data.decode_seconds, 3)})
    if study.user_attrs.get(records.STUDY_PLUGINS) != sources:
        study.set_user_attr(records.STUDY_PLUGINS, sources)
    with_retry(_record_source, storage, prepared)
    return study


def _record_source(storage: optuna.storages.RDBStorage, prepared: PreparedStudy) -> None:
    """Keep the study file's text (once per text), so ``export`` and ``confirm`` can rebuild its trials."""
    try:
        with session_scope(storage.engine) as session:
            StudySourceModel.record(session, prepared.name, prepared.study_file.path, prepared.study_file.text,
                                    prepared.plugins)
    except sqlalchemy.exc.IntegrityError:
        pass  # another worker starting the same study (or this call's lost commit) recorded the same text first


def study_rungs(config: StudyConfig) -> int:
    """How many rungs a trial of the study reports: its budget runs, or its points of progress."""
    if config.study.fidelity == "budget":
        return config.study.budget_rungs
    return config.train.rungs


def sampler_seed(seed: int, session: int, worker: int | None) -> int:
    """The sampler's seed for session ``session`` of a study, worker ``worker`` of ``--workers N`` (None: the
    one process): the study's seed itself for its first single-process run, so a study run once
    from start to end samples as its seed says; otherwise a seed drawn from all three (numpy's
    ``SeedSequence``), so a resumed study, a second machine and each worker draw new points, and a
    study resumed the same way reproduces its draws."""
    if session == 0 and worker is None:
        return seed
    entropy = [seed % 2**64, session, 0 if worker is None else worker + 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _refuse_another_task(storage: optuna.storages.BaseStorage, prepared: PreparedStudy) -> None:
    """A study that exists keeps its data set and model: trials of two tasks in one study compare nothing."""
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(prepared.name))
    except KeyError:
        return
    if prepared.accept_task_change:
        return
    for kind, key, now in _task_identity(prepared.study_file.config.task):
        before = attrs.get(key)
        if before is not None and before != now:
            raise UserError(f"study {prepared.name!r} was run with {kind} {before!r}, but "
                            f"{prepared.study_file.path} has {now!r}; give it another [study] name or "
                            "--study-name to start a new study (or --accept-task-change to mix them)")


def _refuse_other_objectives(storage: optuna.storages.BaseStorage, prepared: PreparedStudy) -> None:
    """A study keeps the objectives it was created with: Optuna's directions cannot change, and values of
    other objectives would not compare."""
    try:
        study_id = storage.get_study_id_from_name(prepared.name)
    except KeyError:
        return
    before = storage.get_study_user_attrs(study_id).get(records.STUDY_OBJECTIVES)
    if before is None:
        before = ["error"] if len(storage.get_study_directions(study_id)) == 1 else None
    now = list(prepared.study_file.config.study.objectives)
    if before != now:
        raise UserError(f"study {prepared.name!r} was created with objectives {before}, but "
                        f"{prepared.study_file.path} has {now}; give it another [study] name or --study-name to "
                        "start a new study")


def _task_identity(task: Any) -> list[tuple[str, str, Any]]:
    """(what, study attribute, value) of each part of a task a study keeps: a wider model or other data
    arguments make trials that compare with the earlier ones no better than another model's."""
    return [("data set", records.STUDY_DATASET, task.dataset), ("model", records.STUDY_MODEL, task.model),
            ("dataset_args", records.STUDY_DATASET_ARGS, dict(task.dataset_args)),
            ("model_args", records.STUDY_MODEL_ARGS, dict(task.model_args))]


def current_sources(prepared: PreparedStudy) -> dict[str, str]:
    """Where each of the study's tricks, and its model, comes from in this process: ``{name: source}``."""
    now = {p["trick"]: p["source"] for p in records.trick_sources(prepared.plugins)}
    if prepared.model_origin:
        now[MODEL_KEY + prepared.study_file.config.task.model] = prepared.model_origin["source"]
    return now


def _plugin_sources(storage: optuna.storages.BaseStorage, prepared: PreparedStudy) -> dict[str, str]:
    """Where the study's tricks come from, the earlier ones kept; a trick that now comes from another plugin
    or version than the study's trials had it from is refused unless ``accept_plugin_change``."""
    before = _recorded_sources(storage, prepared.name)
    now = current_sources(prepared)
    changed = sorted(n for n in now if n in before and before[n] != now[n])
    if changed and not prepared.accept_plugin_change:
        name = changed[0]
        more = f" (and {', '.join(map(repr, changed[1:]))})" if changed[1:] else ""
        what = f"model {name.removeprefix(MODEL_KEY)!r}" if name.startswith(MODEL_KEY) else f"trick {name!r}"
        raise UserError(f"study {prepared.name!r} ran {what} from {before[name]}, but it now comes from "
                        f"{now[name]}{more}: the same parameters may mean another thing; install the plugin it ran "
                        "with, or pass --accept-plugin-change to go on with the new one")
    return {**before, **now}


def _recorded_sources(storage: optuna.storages.BaseStorage, name: str) -> dict[str, str]:
    """``{trick: source}`` the study recorded; for a study from before that record, its source rows'."""
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    except KeyError:
        return {}
    if records.STUDY_PLUGINS in attrs:
        return dict(attrs[records.STUDY_PLUGINS])
    return with_retry(_history_sources, storage, name)


def _history_sources(storage: optuna.storages.RDBStorage, name: str) -> dict[str, str]:
    with session_scope(storage.engine) as session:
        return {p["trick"]: p["source"] for row in StudySourceModel.history(session, name)
                for p in records.trick_sources(row.plugins)}


def make_objective(prepared: PreparedStudy) -> Objective:
    """The objective that plans and trains the prepared study's trials, on this process's device."""
    artifacts = Path(prepared.study_file.config.study.artifacts)
    return Objective(config=prepared.study_file.config, data=prepared.data, tricks=prepared.tricks,
                     settings=prepared.settings, device=prepared.device, budget=prepared.trial_budget,
                     artifacts=artifact_store(artifacts), best_model_cache=artifacts / BEST_MODEL_CACHE,
                     seed=prepared.seed, group=prepared.group, search=prepared.search)


def run_study(prepared: PreparedStudy, study: optuna.Study | None = None, *,
              on_trial: Callable[[optuna.Study, FrozenTrial], Any] | None = None) -> optuna.Study:
    """Optimise until the study's budget or trial count is spent; creates or resumes the study if not given."""
    study = study or create_study(prepared)
    objective = make_objective(prepared)
    study_section = prepared.study_file.config.study
    devices = prepared.group.world_size if prepared.group is not None else 1
    ledger = Ledger(study_engine(study), study.study_name, device=str(prepared.device), devices=devices)
    # Repeats rank configurations by mean error: a study of several objectives keeps its front as it found it.
    intensify = study_section.intensify if prepared.search and len(study_section.objectives) == 1 else 0.0
    worker = Worker(study, ledger, objective.reserved_budget(), prepared.n_trials,
                    interval=study_section.heartbeat_interval, grace=study_section.grace, artifacts=objective.artifacts,
                    first_estimate=objective.first_estimate, intensifier=Intensifier(intensify) if intensify else None)
    with at_checkpoints():  # a stop signal is raised between steps and trials, never inside a record
        while (trial := worker.next_trial()) is not None:
            frozen = worker.run(trial, objective)
            if on_trial is not None:
                on_trial(study, frozen)
    return study


__all__ = ["Overrides", "PreparedStudy", "create_study", "make_objective", "make_pruner", "make_sampler", "prepare",
           "run_study", "sampler_seed", "study_rungs"]
