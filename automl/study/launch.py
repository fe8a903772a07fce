"""Launching a study or a comparison: everything checked before anything is written, then trained in this process,
by ``--workers N`` processes it starts and watches, or as one of the ranks of a trial on several devices.

`automl run` and `automl compare` share this one path, so each command only parses its options, calls it and
prints. The options come as the command parsed them (``args``): its workers are handed them back
(``automl.study.processes.worker_argv``).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import optuna
import torch
from optuna.trial import FrozenTrial

from automl.budget import Budget
from automl.devices import resolve_device
from automl.errors import UserError
from automl.host import Host
from automl.interrupts import PARENT_PID_VAR, exit_code, stop_with_parent
from automl.sequential import Design as SequentialDesign
from automl.storage import resolve_url
from automl.study.arms import Arm, check_seeds, parse_budgets, pick_reference, study_arms
from automl.study.cells import budget_study, check_recipes, completed_cells, queue_budget, record_design
from automl.study.config import StudyFile, load_study_file
from automl.study.processes import check_workers, split_devices, start_workers, watch, worker_argv
from automl.study.race import round_seeds, standing
from automl.study.ranks import check_ranks, env_for_workers, follow, trial_ranks
from automl.study.runner import (Overrides, PreparedStudy, create_study, current_sources, make_objective, prepare,
                                 run_study)
from automl.threads import threads_for, use_threads
from automl.train.distributed import Ranks, rank_device

OnTrial = Callable[[optuna.Study, FrozenTrial], Any]
"""Called in the parent as each trial ends, wherever it was trained."""


@dataclass
class Launch:
    """A study checked end to end before anything is written, and where it trains."""

    args: argparse.Namespace
    """The command's options, as it parsed them."""
    prepared: PreparedStudy
    url: str
    """The storage URL; workers get it through their environment, never on a command line."""
    devices: list[str]
    """The device of each of ``--workers N``."""
    ranks: Ranks | None = None
    """This process's place among the ranks of a trial on several devices; None on one device."""


@dataclass(frozen=True)
class Design:
    """What a comparison compares: its arms, the arm the others are tested against, its budgets and seeds (the
    fixed count, or the sequential design's maximum)."""

    arms: list[Arm]
    reference: Arm
    budgets: list[Budget]
    seeds: int
    sequential: SequentialDesign | None = None
    """Seeds added in rounds until each arm is decided; None: the fixed design of ``seeds`` seeds."""
    drop_losers: bool = False

    def running(self, dropped: Sequence[str]) -> list[Arm]:
        """The arms still compared once ``dropped`` (``--drop-losers``) are left out."""
        return [arm for arm in self.arms if arm.name not in dropped]


def prepare_run(args: argparse.Namespace, make_host: Callable[[], Host]) -> Launch:
    """`automl run`'s study checked end to end before anything is written, with this process's place among the
    ranks of a trial on several devices. ``make_host`` loads the plugins once the file and devices are checked."""
    study_file = load_study_file(args.study_file, args.variant)
    section = study_file.config.study
    if (args.n_trials, args.total_budget, section.n_trials, section.total_budget) == (None,) * 4:
        # A search needs an end; `automl compare` trains its cells and needs none, so the file may leave it out.
        raise study_file.error("[study]", "give total_budget (device time, e.g. '10m') or n_trials, or both (or "
                               "--total-budget / --n-trials)")
    url, devices = _placed(args, study_file)
    ranks, device = _ranks(args, gpus_per_trial(args, study_file), resolve_device(devices[0]))
    prepared = _prepare(args, study_file, make_host, devices, Overrides(
        storage=url, study_name=args.study_name, n_trials=args.n_trials, total_budget=args.total_budget,
        trial_budget=args.trial_budget, device=str(device), seed=args.seed,
        accept_task_change=args.accept_task_change, accept_plugin_change=args.accept_plugin_change))
    return Launch(args, prepared, url, devices, ranks)


def prepare_compare(args: argparse.Namespace, make_host: Callable[[], Host]) -> tuple[Launch, Design]:
    """`automl compare`'s study and design checked before anything is written: the file, its recipes, the
    reference, the budgets and the seeds."""
    study_file = load_study_file(args.study_file, args.variant)
    seeds, tolerance = check_seeds(args, study_file.config.compare)
    budgets = parse_budgets(args.budgets, study_file.config.study.trial_budget)
    url, devices = _placed(args, study_file)
    ranks, device = _ranks(args, gpus_per_trial(args, study_file), resolve_device(devices[0]))
    prepared = _prepare(args, study_file, make_host, devices, Overrides(storage=url, device=str(device)))
    arms = study_arms(prepared)
    in_file = study_file.config.compare.reference
    reference = pick_reference(arms, args.reference or in_file,
                               "--reference" if args.reference or not in_file else "[compare] reference")
    check_recipes(prepared, arms, budgets)
    sequential = None if tolerance is None else SequentialDesign(max_seeds=seeds, arms=len(arms) - 1,
                                                                 tolerance=tolerance)
    return Launch(args, prepared, url, devices, ranks), Design(arms, reference, budgets, seeds, sequential,
                                                               args.drop_losers)


def _placed(args: argparse.Namespace, study_file: StudyFile) -> tuple[str, list[str]]:
    """The storage URL (checked to take ``--workers N``) and each worker's device."""
    url = resolve_url(args.storage, study_file.config.study.storage)
    check_workers(args.workers, url)
    return url, split_devices(args.device, args.workers)


def _prepare(args: argparse.Namespace, study_file: StudyFile, make_host: Callable[[], Host], devices: list[str],
             overrides: Overrides) -> PreparedStudy:
    """The study prepared on the first device; the workers' other devices checked; this process's threads set."""
    prepared = prepare(study_file, make_host(), overrides, data_on_cpu=args.workers > 1 and args.worker is None)
    for other in set(devices[1:]):
        resolve_device(other)
    if prepared.device.type == "cpu":
        use_threads(args.threads)
    return prepared


def gpus_per_trial(args: argparse.Namespace, study_file: StudyFile) -> int:
    """``--gpus-per-trial``, else the study file's."""
    return study_file.config.study.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial


def _ranks(args: argparse.Namespace, k: int, device: torch.device) -> tuple[Ranks | None, torch.device]:
    """(this process's ranks or None, its device): from torchrun's environment (or automl's, in ranks it
    started), else rank 0 of ``k`` when this process trains the trials (not a parent of --workers N)."""
    from_env = Ranks.from_env()
    if from_env is not None and from_env.world_size == 1:
        from_env = None
    check_ranks(k, device, args.device, args.workers, from_env)
    if from_env is not None:
        return from_env, rank_device(device, from_env)
    if k == 1 or args.workers > 1:
        return None, device
    if device.type == "cpu":  # the cores this process had are shared by its k ranks
        args.threads = max(1, threads_for(args.threads) // k)
    ranks = Ranks(0, k, 0)
    return ranks, rank_device(device, ranks)


def in_ranks(launch: Launch, body: Callable[[], int]) -> int:
    """``body()`` on one device; on several, ``body()`` as rank 0 with the other ranks started beside it (unless
    torchrun started them), or, on another rank, the trials rank 0 sends until it says the study is done."""
    if launch.ranks is None:
        return body()
    prepared, args = launch.prepared, launch.args
    with trial_ranks(launch.ranks, prepared.device, [args.command, *_follower_argv(args, launch.ranks)], launch.url,
                     args.threads, current_sources(prepared)) as group:
        prepared.group = group
        if not group.is_main:
            _stop_with_launcher()
            return follow(group, make_objective(prepared))
        return body()


def _stop_with_launcher() -> None:
    """A rank that automl started (not torchrun) stops when the rank 0 that started it dies."""
    if PARENT_PID_VAR in os.environ and int(os.environ[PARENT_PID_VAR]) == os.getppid():
        stop_with_parent(os.getppid())


def _follower_argv(args: argparse.Namespace, ranks: Ranks) -> list[str]:
    """The command line of ranks 1..K-1: rank 0's own, on its device (they are told their rank apart)."""
    return [*worker_argv(args, args.session or 0), "--device", args.device or "auto",
            "--gpus-per-trial", str(ranks.world_size)]


def train_study(launch: Launch, study: optuna.Study, on_trial: OnTrial) -> int:
    """Train ``study`` in this process, or by ``--workers N`` processes started and watched here; the first
    non-zero exit status of a worker, else 0."""
    args, prepared = launch.args, launch.prepared
    if args.workers > 1:
        envs = env_for_workers(gpus_per_trial(args, prepared.study_file), args.workers, prepared.device)
        return _spawn_and_watch(launch, study, worker_argv(args, prepared.session), on_trial, "run", envs)
    run_study(prepared, study, on_trial=on_trial)
    return 0


def train_budget(launch: Launch, design: Design, budget: Budget, dropped: Sequence[str], *,
                 on_queued: Callable[[int], Any], on_trial: OnTrial) -> tuple[optuna.Study, int]:
    """Train one budget's missing cells of the arms not ``dropped``: all its seeds at once
    in the fixed design, round after round until every arm is decided in the sequential one (each round's cells
    queued here, ``on_queued`` told how many, then trained in this process or by ``--workers N`` processes);
    (the budget's study, the first non-zero exit status of a worker, else 0)."""
    cells, study = budget_study(launch.prepared, budget)
    arms = design.running(dropped)
    record_design(study, design.arms, design.reference, design.seeds,
                  design.sequential.as_dict() if design.sequential else None, dropped)
    if design.sequential is None:
        return study, _train_cells(launch, cells, study, budget, queue_budget(cells, study, arms, design.seeds),
                                   on_queued, on_trial)
    trained = -1
    while True:
        done = completed_cells(study, design.seeds)
        count = sum(len(seeds) for seeds in done.values())
        wanted = round_seeds(*standing(done, arms, design.reference, design.sequential), design.reference)
        if not wanted or count == trained:  # decided, or a round that completed nothing (failed cells: said)
            return study, 0
        trained = count
        status = _train_cells(launch, cells, study, budget, queue_budget(cells, study, arms, wanted), on_queued,
                              on_trial)
        if status:
            return study, status


def _train_cells(launch: Launch, cells: PreparedStudy, study: optuna.Study, budget: Budget, waiting: int,
                 on_queued: Callable[[int], Any], on_trial: OnTrial) -> int:
    """Train the ``waiting`` cells queued on ``study``; the first non-zero exit status of a worker, else 0."""
    on_queued(waiting)
    if not waiting:
        return 0
    if launch.args.workers > 1:
        argv = worker_argv(launch.args, cells.session, budgets=str(budget), n_trials=cells.n_trials)
        envs = env_for_workers(gpus_per_trial(launch.args, cells.study_file), launch.args.workers, cells.device)
        return _spawn_and_watch(launch, study, argv, on_trial, "compare", envs)
    run_study(cells, study, on_trial=on_trial)
    return 0


def _spawn_and_watch(launch: Launch, study: optuna.Study, argv: list[str], on_trial: OnTrial, command: str,
                     envs: list[dict[str, str]] | None = None) -> int:
    """One ``automl COMMAND ... --worker`` per device, watched until each has exited (see ``watch``)."""
    workers = start_workers(argv, launch.url, launch.devices, command=command, envs=envs, threads=launch.args.threads)
    return watch(study, workers, on_trial)


def run_worker(launch: Launch) -> int:
    """One of `automl run --workers N`, in its parent's session of the study."""
    args, prepared = launch.args, launch.prepared
    if args.session is None:
        raise UserError("--worker needs --session: worker processes are started by automl run --workers N")
    _stop_with_parent()
    prepared.session, prepared.worker = args.session, args.worker
    return _as_worker(lambda: run_study(prepared, create_study(prepared, new_session=False)))


def compare_worker(launch: Launch, design: Design) -> int:
    """One of `automl compare --workers N`, on the one budget's study its parent queued."""
    args = launch.args
    if args.session is None or args.n_trials is None or len(design.budgets) != 1:
        raise UserError("--worker is for the processes `automl compare --workers N` starts")
    _stop_with_parent()
    cells, study = budget_study(launch.prepared, design.budgets[0], session=args.session, worker=args.worker)
    cells.n_trials = args.n_trials
    return _as_worker(lambda: run_study(cells, study))


def _stop_with_parent() -> None:
    """A worker stops when the parent that started it dies: no orphan keeps training."""
    stop_with_parent(int(os.environ.get(PARENT_PID_VAR, os.getppid())))


def _as_worker(train: Callable[[], Any]) -> int:
    """``train()`` in a worker: an interruption is its parent's to report, so here it is only an exit status."""
    try:
        train()
    except KeyboardInterrupt as exc:
        return exit_code(exc)
    return 0


__all__ = ["Design", "Launch", "OnTrial", "compare_worker", "gpus_per_trial", "in_ranks", "prepare_compare",
           "prepare_run", "run_worker", "train_budget", "train_study"]
