"""One trial: choose tricks and hyperparameters, train under the trial budget, and say how it ended.

The objective writes nothing to the study: :meth:`Objective.begin` returns the trial's plan and
:meth:`Objective.train` its outcome (both in ``automl.study.plan``); the worker records both (see
``automl.study.worker``).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automl.budget import Budget
from automl.errors import TrialFailed
from automl.space import TrickSettings, select_tricks
from automl.trick_space import scratch_study
from automl.storage.artifacts import best_checkpoint, task_checkpoint
from automl.storage.optuna_adapter import frozen_trial, trial_id
from automl import records
from automl.study.config import StudyConfig, config_digest
from automl.study.costs import (ATTR_COST_AFTER, ATTR_COST_BEFORE, OVER_CONSTRAINT, Cost, OverConstraint, broken,
                                constraint_values, measure_before, objective_values)
from automl.study.failures import first_line, model_modules, raised_in_model
from automl.study.fidelity import climb, rung_budgets
from automl.study.pareto import ParetoReport
from automl.study.plan import Outcome, TrialPlan
from automl.study.ranks import share_trial
from automl.study.resume import TrialCheckpoints, follower_checkpointing, identity
from automl.train.checkpoints import Checkpointing, Every
from automl.train.splits import Dataset
from automl.train.distributed import TrialGroup, broke_in_collective
from automl.train.loop import TrainResult, train
from automl.run import TrialContext
from automl.trick import Trick
from automl.trick_errors import TrickError, raised_in

CALIBRATION_STEPS = 5
"""Steps timed, once per worker, to estimate a trial in steps or epochs before any trial has completed."""
ESTIMATE_MARGIN = 2.0
"""The timed steps train the plain model; a trial's tricks may double a step (sam's two passes)."""
TURN_OFF_AFTER = 3
"""A trick whose own exceptions fail this many of the trials that enable it in a row, on one worker, is turned
off for the rest of the study (one warning): three, so that one unlucky sample of its space is not enough."""


@dataclass
class Objective:
    """Plans and trains the trials of one study; the final validation error is the trial's value."""

    config: StudyConfig
    data: Dataset
    tricks: Mapping[str, type[Trick]]
    settings: Mapping[str, TrickSettings]
    device: torch.device
    budget: Budget
    artifacts: object
    """The artifact store that keeps each completed trial's model."""
    best_model_cache: Path
    """Where the study's best model is downloaded when a trick asks for it (``TrialContext.best_checkpoint``)."""
    seed: int
    """The study's seed (``[study] seed``, or ``automl run --seed``); trials train with seed + number."""
    turned_off: dict[str, str] = field(default_factory=dict)
    """The tricks this worker has turned off (see ``TURN_OFF_AFTER``), with the reason each trial records."""
    failed_in_a_row: Counter = field(default_factory=Counter)
    """By trick, how many of the last trials that enabled it its own exceptions failed."""
    _probe: torch.nn.Module | None = field(default=None, repr=False)
    """The task's model, built once, for the tricks' ``unavailable`` (``TrialContext.model``)."""
    group: TrialGroup | None = None
    """The ranks that train each trial together (``--gpus-per-trial K``); None on one device."""
    search: bool = True
    """False for a comparison's fixed recipes: one run at the trial budget, whatever the study's fidelity."""
    _cost: Cost | None = field(default=None, repr=False)
    """The trial's inference cost measured before its first step (``automl.study.costs``); None until then."""

    def begin(self, trial: optuna.Trial) -> TrialPlan:
        """Choose the trial's tricks, parameters and seed."""
        study = trial.study
        if self._probe is None:
            self._probe = self.config.task.probe_model(self.data.input_shape[0], self.data.num_classes)
        context = TrialContext(
            study_name=study.study_name, trial_number=trial.number,
            best_checkpoint=lambda: best_checkpoint(study, self.artifacts, self.best_model_cache), model=self._probe)
        frozen = trial.storage.get_trial(trial_id(trial))
        plan = self.plan(trial, context, self._seed(trial, frozen))
        if self.config.study.fidelity == "budget":
            plan = self._budget_rungs(trial, frozen, plan)
        return plan

    def budgets(self) -> list[Budget]:
        """The budgets of a trial's rungs with the budget fidelity, the last the trial budget; without a pruner,
        only that one (a smaller run nobody compares is time lost)."""
        study = self.config.study
        climbs = self.search and study.pruner != "none"
        return rung_budgets(self.budget, study.budget_rungs if climbs else 1, study.eta)

    def reserved_budget(self) -> Budget:
        """What the ledger reserves for a trial: with the budget fidelity, every rung's run (b/9 + b/3 + b)."""
        if self.config.study.fidelity != "budget":
            return self.budget
        return Budget(sum(b.amount for b in self.budgets()), self.budget.unit)

    def _budget_rungs(self, trial: optuna.Trial, frozen: FrozenTrial, plan: TrialPlan) -> TrialPlan:
        """Where the trial's rungs start: at the last for a repeat of a configuration (it was promoted there
        once already), after those the attempt it retries completed (their values are reported again)."""
        last = len(self.budgets()) - 1
        start = last if records.ATTR_REPEAT_OF in frozen.user_attrs else 0
        previous = frozen.system_attrs.get(records.SYS_RETRY_OF)
        done: dict[int, float] = {}
        if previous is not None:
            before = frozen_trial(trial.study, previous)
            # The last rung is trained again whatever it reported: the trial's model is that run's.
            done = {rung: value for rung, value in before.intermediate_values.items() if start <= rung < last}
        return replace(plan, start_rung=start, rungs_done=done)

    def plan(self, trial: Any, context: TrialContext, seed: int,
             unavailable: dict[str, str] | None = None) -> TrialPlan:
        """The plan of ``trial`` (an Optuna trial, or a ``FixedTrial`` of its params on another rank, with the
        tricks rank 0 found ``unavailable``)."""
        try:
            tricks, failure = select_tricks(trial, self.tricks, self.settings, context, self.turned_off,
                                            unavailable=unavailable), None
        except TrickError as exc:
            tricks, failure = [], exc
        settings = self.config.train.resolve(trial)
        attrs: dict[str, Any] = {records.ATTR_TRICKS: [t.name for t in tricks], records.ATTR_BUDGET: str(self.budget),
                                 records.ATTR_CONFIG: config_digest(self.config), records.ATTR_SEED: seed,
                                 records.ATTR_VAL_SIZE: len(self.data.val)}
        options = {t.name: dict(self.settings[t.name].options) for t in tricks
                   if t.name in self.settings and self.settings[t.name].options}
        if options:
            attrs[records.ATTR_OPTIONS] = options
        return TrialPlan(tricks, settings, seed, context, attrs, failure)

    def _seed(self, trial: optuna.Trial, frozen: FrozenTrial) -> int:
        """The trial's training seed (``frozen`` is the trial as stored); a retry trains with the seed of the
        trial it re-runs."""
        number = records.original_number(frozen)
        if number != frozen.number:
            frozen = frozen_trial(trial.study, number)
        return records.training_seed(self.seed, records.seed_index(frozen))

    def train(self, trial: optuna.Trial, plan: TrialPlan) -> Outcome:
        """Train the planned trial, reporting each rung to the pruner; with an artifact store, it saves
        checkpoints and a retry resumes from the checkpoint of the trial it re-runs (``automl.study.resume``).
        A stop signal leaves the trial's checkpoint for its retry; every other end removes it. On several
        ranks, every rank saves its part and resumes its own, and rank 0 alone reads and writes the store."""
        if plan.failure is not None:
            return self._failed(plan, plan.failure, 0.0)
        self._cost = None  # measured before the trial's first step (``[study] objectives``, ``constraints``)
        if self.group is not None:
            plan = share_trial(self.group, trial, plan, self.budget, self.search)
        if self.artifacts is None:
            return self._regrouped(self._train(trial, plan, None))
        every = Every.of(self.config.study.checkpoint_every, self.budget)
        world_size = 1 if self.group is None else self.group.world_size
        expected = identity(trial, plan.tricks, plan.seed, plan.attrs, world_size)
        if self.group is not None and not self.group.is_main:  # its outcome is rank 0's to record
            return self._regrouped(self._train(trial, plan, follower_checkpointing(self.group, every, expected)))
        checkpoints = TrialCheckpoints(trial, self.artifacts)
        checkpointing = checkpoints.checkpointing(every, expected, self.group)
        outcome = self._train(trial, plan, checkpointing)
        checkpoints.end()
        outcome.spent_seconds += checkpoints.uncharged
        outcome.attrs.update({**checkpoints.attrs, records.ATTR_SPENT: outcome.spent_seconds})
        return self._regrouped(outcome)

    def _regrouped(self, outcome: Outcome) -> Outcome:
        """On several ranks, a trial that failed on any of them ends with every rank leaving the group, which
        they form again for the next trial (``TrialGroup.regroup``): a rank may have failed mid-step, while the
        others waited for it in a collective."""
        if self.group is not None and outcome.state == TrialState.FAIL:
            self.group.regroup()
        return outcome

    def _train(self, trial: optuna.Trial, plan: TrialPlan, checkpointing: Checkpointing | None) -> Outcome:
        started = time.perf_counter()
        try:
            if self.config.study.fidelity == "budget":
                return self._climb(trial, plan, checkpointing)
            return self._progress(trial, plan, checkpointing)
        except OverConstraint as exc:  # not trained: charged its measurement
            return self._over_constraint(exc, self._spent_since(started))
        except TrialFailed as exc:
            return self._failed_here(plan, exc, self._spent_since(started))
        except Exception as exc:
            # Another rank left mid-trial first: a trick whose step waited for it in a collective did not raise.
            elsewhere = self._failed_elsewhere(exc)
            if elsewhere is not None:
                return self._failed(plan, elsewhere, self._spent_since(started))
            # The model's own code next: a trick that calls the model (sam's second pass) did not raise.
            if self._probe is not None and raised_in_model(exc, model_modules(self._probe)):
                return self._failed_here(plan, TrialFailed(records.MODEL_ERROR, f"the model "
                                                           f"{self.config.task.model!r} raised "
                                                           f"{type(exc).__name__}: {first_line(exc)}"),
                                         self._spent_since(started))
            where = raised_in(exc)
            if where is None:
                raise  # the engine's own error: not the trial's to absorb
            return self._failed_here(plan, where.error(exc), self._spent_since(started))

    def _failed_elsewhere(self, exc: Exception) -> TrialFailed | None:
        """On several ranks, the trial's failure on another rank, where ``exc`` is a collective that broke
        because that rank left: rank 0 records what the rank told (``TrialGroup.failure_elsewhere``); the other
        ranks record nothing, and only need to know that the trial is over. None for any other error; on rank 0,
        a rank that left without a word (it died) stops the run (``RankLost``)."""
        if self.group is None or not broke_in_collective(exc):
            return None
        if not self.group.is_main:
            return TrialFailed(records.RANK_FAILED, "another rank left the trial")
        return self.group.failure_elsewhere()

    def _failed_here(self, plan: TrialPlan, exc: TrialFailed, spent: float) -> Outcome:
        """A trial that failed on this rank; the other ranks are told (rank 0 records it as the trial's)."""
        if self.group is not None:
            self.group.tell(exc)
        return self._failed(plan, exc, spent)

    def _progress(self, trial: optuna.Trial, plan: TrialPlan, checkpointing: Checkpointing | None) -> Outcome:
        """One run to the trial budget, its rungs points of progress through it (on several ranks the loop
        shares rank 0's answer: ``TrialGroup.shared_report``)."""
        reporter = self._reporter(trial)

        def report(rung: int, progress: float, val_error: float) -> bool:
            reporter.report(val_error, rung)
            return reporter.should_prune()

        result, model = self._run(plan, plan.tricks, self.budget, report, checkpointing)
        return self._outcome(trial, plan, result, model, result.spent_seconds - result.resumed_seconds)

    def _climb(self, trial: optuna.Trial, plan: TrialPlan, checkpointing: Checkpointing | None) -> Outcome:
        """Complete runs at the rungs' budgets, each from fresh weights and fresh tricks, while the pruner keeps
        the trial; the trial's model and value are its last run's, its cost all of them."""
        budgets = self.budgets()
        last = len(budgets) - 1
        spent: list[float] = []

        def run_at(rung: int, budget: Budget) -> tuple[float, Any]:
            tricks = copy.deepcopy(plan.tricks)  # pristine: a trick keeps state through a run
            result, model = self._run(plan, tricks, budget, None, checkpointing if rung == last else None)
            spent.append(result.spent_seconds - result.resumed_seconds)
            return result.val_error, (result, model, budget)

        reporter = self._reporter(trial)
        climbed = climb(reporter, budgets, run_at, done=plan.rungs_done, start=plan.start_rung,
                        should_prune=self._should_prune(reporter))
        runs = [kept for kept in climbed.results if kept is not None]
        reached = {records.ATTR_RUNG_BUDGETS: [str(b) for _, _, b in runs], records.ATTR_RUNG_SPENT: spent}
        if not runs:  # every rung was an earlier attempt's, and the pruner stopped the trial at the last of them
            return Outcome(TrialState.PRUNED, 0.0, {records.ATTR_SPENT: 0.0, **_pruned(trial), **reached})
        result, model, _ = runs[-1]
        result.pruned = climbed.pruned
        outcome = self._outcome(trial, plan, result, model, sum(spent))
        outcome.attrs.update(reached)
        return outcome

    def _run(self, plan: TrialPlan, tricks: list[Trick], budget: Budget, report: Any,
             checkpointing: Checkpointing | None) -> tuple[TrainResult, torch.nn.Module]:
        """One run of the trial's tricks and settings at ``budget``, from the trial's seed."""
        torch.manual_seed(plan.seed)
        model = self.config.task.build_model(self.data)
        result = train(model, self.data, plan.settings, budget, tricks=tricks, device=self.device,
                       seed=plan.seed, report=report, context=plan.context,
                       build_model=lambda: self.config.task.build_model(self.data), checkpointing=checkpointing,
                       group=self.group, on_start=self._measure_cost if self._measures and self._cost is None else None)
        return result, model

    @property
    def _measures(self) -> bool:
        """Whether trials measure their inference cost before training: it is an objective, or bounded."""
        return len(self.config.study.objectives) > 1 or bool(self.config.study.constraints)

    def _measure_cost(self, run: Any) -> None:
        """Before the trial's first step: its inference cost (rank 0's, on several ranks, so that all decide
        alike), and no training at all for a configuration over a constraint."""
        cost = measure_before(run) if self.group is None or self.group.is_main else None
        self._cost = cost if self.group is None else self.group.share(cost)
        over = broken(self._cost, self.config.study.constraints)
        if over:
            raise OverConstraint(self._cost, over)

    def _reporter(self, trial: Any) -> Any:
        """What a rung is reported to: the trial itself, or with several objectives :class:`ParetoReport`."""
        objectives = self.config.study.objectives
        if len(objectives) == 1:
            return trial
        return ParetoReport(trial, lambda error: objective_values(error, self._cost, objectives))

    def _cost_attrs(self, result: TrainResult | None) -> tuple[dict[str, Any], dict[str, float], Cost | None]:
        """(the cost attributes, the constraint values, the cost the trial's values take): as measured once
        trained where it was, else before training; nothing where none was measured (``_measures``)."""
        if self._cost is None:
            return {}, {}, None
        after = self._cost
        attrs = {ATTR_COST_BEFORE: self._cost.as_dict()}
        if result is not None and result.inference is not None:
            after = Cost.of(result.inference, int(result.attrs.get(records.INFERENCE_COST, 1)))
            attrs[ATTR_COST_AFTER] = after.as_dict()
        return attrs, constraint_values(after, self.config.study.constraints), after

    def _over_constraint(self, exc: OverConstraint, spent: float) -> Outcome:
        attrs = {records.ATTR_SPENT: spent, records.ATTR_END: OVER_CONSTRAINT, records.ATTR_DETAIL: exc.detail,
                 ATTR_COST_BEFORE: exc.cost.as_dict()}
        return Outcome(TrialState.PRUNED, spent, attrs,
                       constraints=constraint_values(exc.cost, self.config.study.constraints))

    def _should_prune(self, trial: Any) -> Any:
        """Asks the study's pruner between budget rungs; on several ranks, rank 0 asks and every rank takes its
        answer."""
        if self.group is None:
            return trial.should_prune
        return lambda: self.group.flag(trial.should_prune() if self.group.is_main else False)

    def _outcome(self, trial: Any, plan: TrialPlan, result: TrainResult, model: torch.nn.Module,
                 spent: float) -> Outcome:
        """How a trial whose runs finished ended: pruned (with why), complete, or failed on bad attributes."""
        problem = records.attrs_problem(result.attrs)
        if problem is not None:
            return self._failed(plan, TrialFailed("bad_attrs", problem), spent)
        self._tally(plan, None)
        cost_attrs, constraints, cost = self._cost_attrs(None if result.pruned else result)
        attrs = {**measured(result), **cost_attrs, records.ATTR_SPENT: spent}
        if result.pruned:
            return Outcome(TrialState.PRUNED, spent, {**attrs, **_pruned(trial)}, constraints=constraints)
        objectives = self.config.study.objectives
        value = result.val_error if len(objectives) == 1 else objective_values(result.val_error, cost, objectives)
        return Outcome(TrialState.COMPLETE, spent, {**attrs, records.ATTR_END: records.COMPLETE},
                       value=value, model=task_checkpoint(self.config.task, model, self.data),
                       weights=result.weights, constraints=constraints)

    def _spent_since(self, started: float) -> float:
        """Device-seconds since ``started``: the wall-clock time on each of the trial's devices."""
        return (time.perf_counter() - started) * (self.group.world_size if self.group is not None else 1)

    def first_estimate(self) -> float:
        """Device seconds a trial of this study's budget in steps or epochs may take, from a few timed steps
        of the plain model (no tricks) with its rung evaluations, times ``ESTIMATE_MARGIN``."""
        with torch.random.fork_rng(devices=[]):  # leaves no trace in the trials' random streams
            torch.manual_seed(self.seed)
            settings = self.config.train.resolve(scratch_study(self.seed).ask())  # a range: any of its values
            model = self.config.task.build_model(self.data)
            timed = train(model, self.data, settings, Budget.of_steps(CALIBRATION_STEPS), device=self.device,
                          seed=self.seed)
        per_step = timed.train_seconds / max(timed.steps, 1)
        steps = self.reserved_budget().amount
        if self.budget.is_epochs:
            steps *= timed.steps / max(timed.epochs, 1e-9)
        devices = self.group.world_size if self.group is not None else 1  # timed on one, charged on each
        return ESTIMATE_MARGIN * (per_step * steps + timed.eval_seconds) * devices

    def _failed(self, plan: TrialPlan, exc: TrialFailed, spent: float) -> Outcome:
        self._tally(plan, getattr(exc, "trick", None))  # a trick's own error here (TrickError) or on another rank
        return Outcome.failed(exc, spent)

    def _tally(self, plan: TrialPlan, failed_by: str | None) -> None:
        """Count the trials a trick's own errors failed in a row; turn it off at ``TURN_OFF_AFTER``."""
        for trick in plan.tricks:
            if trick.name != failed_by:
                self.failed_in_a_row[trick.name] = 0
        if failed_by is None:
            return
        self.failed_in_a_row[failed_by] += 1
        if self.failed_in_a_row[failed_by] >= TURN_OFF_AFTER and failed_by not in self.turned_off:
            self.turned_off[failed_by] = f"turned off after its errors failed {TURN_OFF_AFTER} trials in a row"
            warnings.warn(f"trick {failed_by!r} is turned off for the rest of this study: its errors failed "
                          f"{TURN_OFF_AFTER} trials in a row (see their end_detail)", RuntimeWarning, stacklevel=2)


def _pruned(trial: Any) -> dict[str, Any]:
    """The attributes of a pruned trial: its end, and why the study's pruner pruned it (rung, value, cut-off)
    where the pruner says (``NoiseAwarePruner``)."""
    study = getattr(trial, "study", None)
    explain = getattr(getattr(study, "pruner", None), "explain", None)
    detail = explain(getattr(trial, "number", None)) if explain is not None else None
    return {records.ATTR_END: records.PRUNED, **({records.ATTR_DETAIL: detail} if detail else {})}


def measured(result: TrainResult) -> dict[str, Any]:
    """What a run measured, as the trial's user attributes (the tricks' own ``run.attrs`` included). A resumed
    run's ``spent_seconds`` are its own, those past its checkpoint: what its cost row charges; its
    ``train_seconds`` and ``eval_seconds`` are those of the whole training, checkpoint included."""
    attrs = {
        records.ATTR_SPENT: result.spent_seconds - result.resumed_seconds, records.ATTR_TRAIN_SECONDS: result.train_seconds,
        records.ATTR_EVAL_SECONDS: result.eval_seconds, records.ATTR_STEPS: result.steps,
        records.ATTR_EPOCHS: round(result.epochs, 4), records.ATTR_PROGRESS: round(result.progress, 4),
        records.ATTR_TRAIN_LOSS: result.train_loss, records.ATTR_VAL_ERROR_MODEL: result.val_error_model, records.ATTR_DATA_WAIT: round(result.data_wait_fraction, 4),
        **result.attrs,
    }
    if result.inference is not None:
        attrs.update({records.ATTR_INFERENCE_MS: result.inference.ms_per_1000,
                      records.ATTR_INFERENCE_FLOPS: result.inference.flops_per_image,
                      records.ATTR_INFERENCE_DEVICE: result.inference.device})
    return attrs
