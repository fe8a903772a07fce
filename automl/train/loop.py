"""The budgeted training loop: trains until the budget is spent, evaluating at progress rungs."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from torch import nn

from automl.budget import Budget, Progress
from automl.clocks import Clock, clock_for
from automl.errors import TrialFailed
from automl.interrupts import checkpoint
from automl.records import COMPLETE, FAILED, INFERENCE_COST, PRUNED
from automl.train.checkpoints import Checkpointing
from automl.train.cost import measure_inference
from automl.train.evaluation import errors_of, evaluate, wrong_counts
from automl.train.loader import Loader
from automl.train.result import TrainResult
from automl.train.settings import TrainSettings
from automl.train.splits import Dataset
from automl.train.trick_hooks import TrickHooks
from automl.run import Run, TrialContext, default_step
from automl.trick import Trick

if TYPE_CHECKING:
    from automl.train.distributed import TrialGroup

# Reading the loss waits for a GPU, so NaNs are looked for every this many steps, and read a few steps later
# (:class:`_NanWatch`), once the device has computed them.
NAN_CHECK_EVERY = 32

Reporter = Callable[[int, float, float], bool]
"""(rung, progress, val_error) -> True to stop the run early (pruned)."""


def build_optimizer(settings: TrainSettings, params: Any) -> torch.optim.Optimizer:
    """The optimizer ``settings`` name, over parameters or param groups."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                               nesterov=settings.nesterov and settings.momentum > 0,
                               weight_decay=settings.weight_decay)
    kind = torch.optim.Adam if settings.optimizer == "adam" else torch.optim.AdamW
    return kind(params, lr=settings.lr, weight_decay=settings.weight_decay)


def train(model: nn.Module, data: Dataset, settings: TrainSettings, budget: Budget, *,
          tricks: Sequence[Trick] = (), device: torch.device | str = "cpu", seed: int = 0,
          report: Reporter | None = None, evaluate_test: bool = False,
          context: TrialContext | None = None, build_model: Callable[[], nn.Module] | None = None,
          checkpointing: Checkpointing | None = None, group: "TrialGroup | None" = None,
          clock: Callable[[torch.device], Clock] = clock_for,
          on_start: Callable[[Run], Any] | None = None) -> TrainResult:
    """Train ``model`` on ``data.train`` until ``budget`` is spent; the value is the final validation error.

    ``build_model`` builds another model like ``model`` from torch's global RNG (``Run.fresh_model``).
    ``checkpointing``: when and where the run saves itself, and the checkpoint it resumes from.
    ``group``: this process is one rank of a trial on several devices (see ``automl.train.distributed``).
    ``clock``: makes the clocks that time training and evaluation on the run's device (``automl.clocks``).
    ``on_start``: called with the run once the tricks' setup is done, before the first step, on the evaluation
    clock (what a study measures before training: ``automl.study.costs``); it may raise to end the run there.

    Only the training steps count towards the budget (and so towards progress); evaluation is timed apart and
    added to the device-seconds spent. A budget of device time ends within half a step of its amount: a step the
    clock predicts would end more than half a step past it is not started. Every trick's
    ``on_trial_end`` is called once, however the run ends; an exception is raised as it came.
    """
    if settings.searched():
        raise ValueError(f"settings still hold search ranges {sorted(settings.searched())}; resolve them first")
    loop = _out_of_memory_fails(_make_loop, model, data, settings, budget, tricks, torch.device(device), seed,
                                report, context, build_model, checkpointing, group, clock)
    loop.on_start = on_start
    try:
        result = _out_of_memory_fails(_train, loop, evaluate_test)
    except BaseException as exc:
        loop.hooks.end_trial(loop.run, FAILED, exc)
        raise
    loop.hooks.end_trial(loop.run, PRUNED if result.pruned else COMPLETE)
    return result


def _out_of_memory_fails(train_run: Callable[..., TrainResult], *args: Any) -> TrainResult:
    """``train_run(*args)``, with running out of device memory as a failed trial."""
    try:
        return train_run(*args)
    except torch.OutOfMemoryError as exc:
        _release_memory()
        raise TrialFailed("oom", str(exc).splitlines()[0]) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
            _release_memory()
            raise TrialFailed("oom", str(exc).splitlines()[0]) from exc
        raise


def _train(loop: "_Loop", evaluate_test: bool) -> TrainResult:
    for setup in loop.hooks.setup:
        setup(loop.run)
    if loop.on_start is not None:
        loop._charged([loop.on_start], loop.run)
    if loop.checkpointing is not None:
        loop.checkpointing.start(loop)
    loop.train_clock.start()
    for x, y in loop.batches():
        loop.step(x, y)
    loop.end()
    test_errors = loop.evaluate_test() if evaluate_test else (None, None)
    result = loop.result(*test_errors)
    if not result.pruned and len(loop.data.val):
        result.inference = measure_inference(loop.run, loop.data.val, loop.hooks.predict)
    return result


def _make_loop(model, data, settings, budget, tricks, device, seed, report, context, build_model,
               checkpointing, group, clock) -> "_Loop":
    model.to(device)
    run = _make_run(model, data, settings, budget, device, seed, context)
    run.seed, run.build_model = seed, build_model
    loop = _Loop(run, tricks, settings, report, checkpointing, clock)
    if group is not None:
        group.join(loop)
    return loop


def _make_run(model, data, settings, budget, device, seed, context) -> Run:
    """The run state handed to the tricks, with its loader, optimizer and loss."""
    loader = Loader(data.train, settings.batch_size, augment=settings.augment, flip=settings.flip,
                            padding=settings.crop_padding, seed=seed)
    make_optimizer = lambda params: build_optimizer(settings, params)  # noqa: E731
    return Run(model=model, optimizer=make_optimizer(model.parameters()), criterion=nn.CrossEntropyLoss(),
               loader=loader, data=data, device=device, budget=budget, base_lr=settings.lr,
               make_optimizer=make_optimizer, context=context, attrs={INFERENCE_COST: 1})


class _Loop:
    """One budgeted run: the passes and steps the budget allows, the rung evaluations, and what they measured."""

    def __init__(self, run: Run, tricks: Sequence[Trick], settings: TrainSettings, report: Reporter | None,
                 checkpointing: Checkpointing | None = None, clock: Callable[[torch.device], Clock] = clock_for) -> None:
        self.run, self.settings, self.report, self.checkpointing = run, settings, report, checkpointing
        self.tricks, self.hooks = tuple(tricks), (hooks := TrickHooks(tricks))
        # Taken before the tricks' setup, which may change what the run holds but not what the loop trains on.
        self.loader, self.data = run.loader, run.data
        run.after_backward_hooks = hooks.after_backward
        self.train_step = hooks.train_step[0] if hooks.train_step else default_step
        self.progress = Progress(run.budget)
        self.train_clock, self.eval_clock = clock(run.device), clock(run.device)
        # What progress reads: the training clock, or the reading a trial's ranks agree on (TrialGroup.join).
        self.progress_clock: Any = self.train_clock
        every = checkpointing.every if checkpointing is not None else None
        # A clock is read inside the loop only for a budget (or checkpoints) in seconds: steps and epochs need none.
        self.timed = run.budget.is_time or (every is not None and every.seconds is not None)
        self.spent = 0.0  # the training seconds progress last read (only read when timed)
        self.nan = _NanWatch(self.train_clock, run.device)
        self.rung_points = [(k + 1) / settings.rungs for k in range(settings.rungs)]
        self.history: list[tuple[float, float]] = []
        self.errors = (math.nan, math.nan)
        self.loss_sum = torch.zeros((), device=run.device)
        self.p = self.epochs = 0.0
        self.pruned = False
        self.on_start: Callable[[Run], Any] | None = None
        self.pass_batch: int | None = None
        """The batch of the pass in progress that comes next; None before a pass starts (a resumed run sets it)."""

    def state_dict(self) -> dict[str, Any]:
        """Where the loop is, between two steps, as checkpoint data (``Checkpointing`` saves it under
        ``"loop"``, with its own seconds)."""
        return {"p": self.p, "epochs": self.epochs, "history": [list(h) for h in self.history],
                "errors": list(self.errors), "loss_sum": self.loss_sum.detach().clone(), "batch": self.pass_batch,
                "train_seconds": self.train_clock.elapsed, "eval_seconds": self.eval_clock.elapsed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on where :meth:`state_dict` was taken; keys it does not know (checkpointing's own) are left."""
        self.p, self.epochs, self.pass_batch = state["p"], state["epochs"], state["batch"]
        self.history = [tuple(h) for h in state["history"]]
        self.errors = tuple(state["errors"])
        self.loss_sum = state["loss_sum"].to(self.run.device)
        self.train_clock.elapsed, self.eval_clock.elapsed = state["train_seconds"], state["eval_seconds"]

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each (x, y) the budget has room for, pass after pass, evaluating the rungs on the way;
        it ends once the budget is spent or the run is pruned."""
        run, loader = self.run, self.loader
        early_rungs = self.settings.rungs - 1  # the last rung is evaluated at the end
        saver = self.checkpointing
        # A resumed run goes on inside the pass its checkpoint was taken in, whose start the tricks were told of.
        while self.pass_batch is not None or self._start_pass():
            first, self.pass_batch = self.pass_batch or 0, None
            batches = len(loader)
            if batches == 0:
                raise ValueError("the training split is empty")
            pass_batches = iter(loader)
            for i in range(first, batches):
                self.epochs = epochs = run.epoch + i / batches
                room = self._measure(epochs)
                if len(self.history) < early_rungs and self.p >= self.rung_points[len(self.history)]:
                    if self._early_rung():
                        return
                if not room:
                    return
                if saver is not None:
                    self.pass_batch = i  # where a checkpoint taken now goes on
                    saver.at_stop_point(self, self.spent)
                checkpoint()  # a stop signal (Ctrl-C, SIGTERM) is raised here, between two steps
                yield next(pass_batches)  # drawn only once the budget allows the step
            self.pass_batch = None
            run.epoch += 1
            self.epochs = float(run.epoch)

    def _start_pass(self) -> bool:
        """Tell the tricks of a new pass; False, and nobody told, when the budget has no room for one."""
        run = self.run
        if run.epoch:
            if not self._measure(float(run.epoch)):
                return False
            run.progress = self.p  # so a pass-level decision (a new batch size) sees where the run is now
        for on_epoch_start in self.hooks.on_epoch_start:
            on_epoch_start(run)
        return True

    def _measure(self, epochs: float) -> bool:
        """Progress now (``self.p``), and whether the budget has room for another step.

        A budget of device time stops the run where the clock predicts the next step would end more than half a
        step past the budget (the first, slow steps included): the run ends within half a step of its budget,
        rather than up to a whole step past it. Progress is then 1: the budget is spent, to the nearest step."""
        run = self.run
        if self.timed:
            self.spent = self.progress_clock.read()
        self.p = self.progress.of(seconds=self.spent, epochs=epochs, steps=run.step)
        if not run.budget.is_time:
            return self.p < 1.0
        if self.spent + self.progress_clock.step_seconds() / 2 < run.budget.amount:
            return True
        self.p = 1.0
        return False

    def _early_rung(self) -> bool:
        """Evaluate a rung before the end and report it; True when the reporter prunes the run."""
        self._evaluate_rung()
        if self.report is not None and self.report(len(self.history) - 1, self.p, self.errors[0]):
            self.pruned = True
            return True
        self.train_clock.start()
        return False

    def _evaluate_rung(self) -> None:
        """Evaluate on the validation split; the loss is checked once the device has caught up."""
        self.train_clock.stop()
        self.eval_clock.start()
        counts = wrong_counts(self.run, self.data.val, self.hooks.predict, self.settings.eval_batch_size)
        self.eval_clock.stop()
        # The rung's one wait for the device: it settles both clocks, the loss and the counts, read next.
        self.eval_clock.synchronize()
        _check_finite(self.loss_sum, self.run.step)
        self.errors = errors_of(counts, self.data.val)
        rung = len(self.history)
        self.history.append((self.p, self.errors[0]))
        self._charged(self.hooks.on_rung, self.run, rung, self.errors[0])

    def _charged(self, hooks: list[Callable], *args: Any) -> None:
        """The tricks' ``hooks`` outside the steps (at a rung, at the end), on the evaluation clock: spent by the
        trial, so charged to it, but not progress through its budget."""
        if hooks:
            self.eval_clock.start()
            for hook in hooks:
                hook(*args)
            self.eval_clock.stop()

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One training step at the current progress: the LR, the tricks' step hooks around the optimizer step."""
        run, hooks = self.run, self.hooks
        x, y = hooks.start_step(run, self.p, x, y)
        loss = self.train_step(run, x, y)
        run.step += 1
        run.samples += len(x) * run.world_size  # every rank trained on a shard of the same size
        self.loss_sum += loss.detach().float()
        if run.step % NAN_CHECK_EVERY == 0:
            self.nan.look(self.loss_sum, run.step)
        for on_step_end in hooks.on_step_end:
            on_step_end(run, loss)
        if self.timed:
            self.train_clock.step()

    def end(self) -> None:
        """Stop training; unless pruned (its rung checked the loss), check the loss, tell the tricks and evaluate
        the last rung."""
        self.train_clock.stop()
        self.run.progress = self.p
        if self.pruned:
            return
        # The end's wait for the device: the last steps' loss is checked before the tricks' on_end sees the model.
        self.train_clock.synchronize()
        _check_finite(self.loss_sum, self.run.step)
        self._charged(self.hooks.on_end, self.run)
        self._evaluate_rung()
        if self.report is not None:
            self.report(len(self.history) - 1, self.p, self.errors[0])

    def evaluate_test(self) -> tuple[float, float]:
        self.eval_clock.start()
        errors = evaluate(self.run, self.data.test, self.hooks.predict, self.settings.eval_batch_size)
        self.eval_clock.stop()
        return errors

    def result(self, test_error: float | None, test_error_model: float | None) -> TrainResult:
        run = self.run
        return TrainResult(
            val_error=self.errors[0], val_error_model=self.errors[1], train_seconds=self.train_clock.elapsed,
            eval_seconds=self.eval_clock.elapsed, steps=run.step, epochs=self.epochs, progress=self.p,
            pruned=self.pruned, train_loss=float(self.loss_sum) / max(1, run.step), history=self.history,
            test_error=test_error, test_error_model=test_error_model, attrs=run.attrs, weights=run.weights,
            data_wait_seconds=self.loader.wait_seconds,
            checkpoint_seconds=0.0 if self.checkpointing is None else self.checkpointing.seconds,
            resumed_seconds=0.0 if self.checkpointing is None else self.checkpointing.resumed_seconds,
            devices=run.world_size)


def _check_finite(loss_sum: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss_sum):
        _nan_loss(loss_sum, step)


def _nan_loss(loss_sum: torch.Tensor, step: int) -> None:
    raise TrialFailed("nan_loss", f"the training loss became {loss_sum.item()} by step {step}")


class _NanWatch:
    """Looks for a NaN in the summed loss without waiting for the device: whether it is finite is copied to the
    host behind the steps in flight, and read once the device has got there (at once on the CPU), a few steps
    later. The exact checks are at the rungs and the end, where the loop waits anyway."""

    def __init__(self, clock: Clock, device: torch.device) -> None:
        self.clock, self.pinned = clock, device.type == "cuda"  # a copy to pinned memory does not wait
        self.flags: deque[tuple[torch.Tensor, Callable[[], bool]]] = deque()

    def look(self, loss_sum: torch.Tensor, step: int) -> None:
        flag = torch.empty((), dtype=torch.bool, pin_memory=self.pinned)
        flag.copy_(torch.isfinite(loss_sum), non_blocking=True)
        self.flags.append((flag, self.clock.marker()))
        while self.flags and self.flags[0][1]():
            if not self.flags.popleft()[0]:
                _nan_loss(loss_sum, step)


def _release_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
