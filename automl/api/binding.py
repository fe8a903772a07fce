"""A recipe's tricks bound to your own model, optimizer and loop: the hooks automl's loop calls, called by yours.

Your loop calls, for each batch, ``before_step`` (the LR of the step, the pass's and the step's hooks, the batch
transforms), then the step (your forward with ``criterion`` under ``amp()``, ``zero_grad``, ``backward``, then
``after_backward()`` and ``optimizer.step()``, or ``step()``, or the whole of it with ``train_step``), then
``after_step(loss)``; once ``done``, ``end()``; then ``predict(x)`` gives the recipe's scores (an ensemble's, an
average's, a flip's). Progress is what automl's loop measures: steps, or epochs of ``steps_per_epoch`` steps, of
your budget. A budget in seconds is automl's clock's to measure, so it is refused here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from automl.budget import Budget, Progress
from automl.errors import UserError
from automl.records import COMPLETE, FAILED
from automl.run import Run, TrialContext, default_step
from automl.trick import Trick, overridden
from automl.train.trick_hooks import TrickHooks


class Attached:
    """Tricks bound to a model and optimizer, driven by progress through a budget of steps or epochs."""

    def __init__(self, tricks: Sequence[Trick], model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 budget: Budget | str, base_lr: float, batch_size: int, steps_per_epoch: int | None = None,
                 train_data: Any = None, num_classes: int | None = None, criterion: Callable | None = None,
                 seed: int = 0, build_model: Callable[[], nn.Module] | None = None,
                 context: TrialContext | None = None) -> None:
        budget = Budget.parse(budget) if isinstance(budget, str) else budget
        _check_budget(budget, steps_per_epoch)
        _refuse_loop_owners(tricks)
        device = next(model.parameters()).device
        kind = type(optimizer)
        self.run = Run(model=model, optimizer=optimizer, criterion=criterion or nn.CrossEntropyLoss(),
                       loader=_Batches(batch_size, _UserSplit(train_data, batch_size, steps_per_epoch, device)),
                       data=_Classes(num_classes if num_classes is not None else getattr(train_data, "num_classes",
                                                                                           None)),
                       device=device, budget=budget, base_lr=base_lr,
                       make_optimizer=lambda params: kind(params, **optimizer.defaults), context=context, seed=seed,
                       build_model=build_model)
        self.tricks, self.hooks = tuple(tricks), TrickHooks(tricks)
        self.run.after_backward_hooks = self.hooks.after_backward
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self._progress = Progress(budget)
        self._in_pass = 0  # the step of the pass in progress that comes next
        self._ended = False
        self._told_if_failed(self.hooks.setup)
        if self.run.loader.batch_size != batch_size:
            owner = ", ".join(t.name for t in tricks if "batch_size" in t.owns) or "a trick"
            refused = UserError(f"{owner} trains this recipe with batches of {self.run.loader.batch_size}, your "
                                f"loop with {batch_size}: build your loader with "
                                f"batch_size={self.run.loader.batch_size} and attach with the same")
            self.hooks.end_trial(self.run, FAILED, refused)  # set up, so told it ends, as after a failed setup
            raise refused

    # -- what your loop reads --------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        return self.run.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer to step: yours, or the one a trick rebuilt it as (param groups, another kind)."""
        return self.run.optimizer

    @property
    def criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The loss with the tricks' wrapping (label smoothing, distillation); soft targets welcome."""
        return self.run.criterion

    @property
    def lr(self) -> float:
        """The LR of the current step (the recipe's base LR times every schedule's factor)."""
        return self.run.lr

    @property
    def progress(self) -> float:
        """How much of the budget is spent, in [0, 1], before the next step."""
        epochs = self.run.epoch + (self._in_pass / self.steps_per_epoch if self.steps_per_epoch else 0.0)
        return self._progress.of(seconds=0.0, epochs=epochs, steps=self.run.step)

    @property
    def done(self) -> bool:
        """Whether the budget is spent: check it before each step, then call :meth:`end`."""
        return self.progress >= 1.0

    def amp(self) -> contextlib.AbstractContextManager:
        """The autocast context of the forward pass (a no-op unless a trick trains in mixed precision)."""
        return self.run.amp()

    # -- the hooks, in the order your loop calls them --------------------------------------
    def before_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start the step: a new pass's hooks, the step's LR on every param group, the step's hooks, and the batch
        as the tricks transform it (mixup, cutout), which is what to train on."""
        if self._ended or self.done:
            raise UserError("the budget is spent (or end() was called): check .done before each step")
        run, hooks = self.run, self.hooks
        if self._in_pass == 0:
            run.progress = self.progress
            for on_epoch_start in hooks.on_epoch_start:
                on_epoch_start(run)
        return hooks.start_step(run, self.progress, x, y)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The whole step, forward to optimizer step, as automl's loop takes it: the step of the trick that owns
        it (SAM's two passes), else forward, ``zero_grad``, backward and :meth:`step`. Returns the loss."""
        owner = self.hooks.train_step
        return owner[0](self.run, x, y) if owner else default_step(self.run, x, y)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled by the recipe's GradScaler where it trains in mixed precision."""
        self.run.backward(loss)

    def after_backward(self) -> None:
        """The tricks' gradient hooks (clipping), between your backward and your ``optimizer.step()``."""
        self._refuse_own_step("after_backward() and optimizer.step()")
        if self.run.grad_scaler is not None:
            raise UserError("this recipe trains in mixed precision through a GradScaler: call .step() in place of "
                            ".after_backward() and optimizer.step()")
        for hook in self.hooks.after_backward:
            hook(self.run)

    def step(self) -> None:
        """The optimizer step with the tricks' gradient hooks, through the recipe's GradScaler if any."""
        self._refuse_own_step("step()")
        self.run.step_optimizer()

    def after_step(self, loss: torch.Tensor) -> None:
        """End the step: count it (and the pass) towards the budget, and run the tricks' step-end hooks (averages,
        snapshots, FreezeOut). ``loss`` stays on the device."""
        run = self.run
        run.step += 1
        run.samples += self.batch_size
        for on_step_end in self.hooks.on_step_end:
            on_step_end(run, loss)
        self._in_pass += 1
        if self.steps_per_epoch and self._in_pass == self.steps_per_epoch:
            run.epoch += 1
            self._in_pass = 0

    def end(self) -> None:
        """Once the budget is spent: the tricks' end hooks (the last snapshot, SWA's BatchNorm statistics), each
        trick told the run is complete."""
        if self._ended:
            return
        self._ended = True
        self.run.progress = self.progress
        self._told_if_failed(self.hooks.on_end)
        self.hooks.end_trial(self.run, COMPLETE)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The recipe's scores for ``x`` (N, classes), as automl evaluates it: the first trick's prediction (an
        ensemble, an average, flips), else the model's own, in eval mode under ``amp()``."""
        model = self.run.model
        was_training = model.training
        model.eval()
        try:
            with self.run.amp():
                for predict in self.hooks.predict:
                    scores = predict(self.run, x)
                    if scores is not None:
                        return scores
                return model(x)
        finally:
            model.train(was_training)

    @property
    def attrs(self) -> dict[str, Any]:
        """What the tricks recorded (inference passes, members kept, ...)."""
        return self.run.attrs

    @property
    def weights(self) -> dict[str, dict[str, torch.Tensor]]:
        """The extra weights the tricks kept (snapshots, averages), by name."""
        return self.run.weights

    def _told_if_failed(self, hooks: list[Callable]) -> None:
        """Each of ``hooks`` on the run; where one raises, every trick is told the run failed (to clean up)."""
        try:
            for hook in hooks:
                hook(self.run)
        except BaseException as exc:
            self.hooks.end_trial(self.run, FAILED, exc)
            raise

    def _refuse_own_step(self, what: str) -> None:
        if self.hooks.train_step:
            owner = self.hooks.train_step[0].__self__.name
            raise UserError(f"trick {owner} owns the training step (it takes its own forward and backward passes): "
                            f"call .train_step(x, y) in place of your forward, backward and {what}")


def _check_budget(budget: Budget, steps_per_epoch: int | None) -> None:
    if budget.is_time:
        raise UserError(f"budget {budget}: a budget of device time is measured by automl's own loop; in your loop "
                        "give steps or epochs (e.g. '500steps', '3ep')")
    if budget.unit == "epochs" and not steps_per_epoch:
        raise UserError(f"budget {budget}: a budget in epochs needs steps_per_epoch (len(your_loader))")
    if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int)
                                        or steps_per_epoch < 1):
        raise UserError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")


def _refuse_loop_owners(tricks: Iterable[Trick]) -> None:
    """A trick that changes the batch size from pass to pass needs automl's loader, which it rebuilds."""
    for trick in tricks:
        if "batch_size" in trick.owns and overridden(trick, "on_epoch_start"):
            raise UserError(f"trick {trick.name} changes the batch size from one pass to the next, which only "
                            "automl's own loader follows: train this recipe with `automl train`, or leave "
                            f"{trick.name} out")


class _Batches:
    """What the tricks see of your loader: its batch size (which they may read, and a batch-size trick set before
    the first step), and the training data."""

    def __init__(self, batch_size: int, split: "_UserSplit") -> None:
        self.batch_size, self.split = batch_size, split


class _UserSplit:
    """Your training data as the tricks read it: its size, and its batches in order (SWA's BatchNorm pass)."""

    def __init__(self, data: Any, batch_size: int, steps_per_epoch: int | None, device: torch.device) -> None:
        self.data, self.device = data, device
        self.size = _size_of(data, batch_size, steps_per_epoch)

    def __len__(self) -> int:
        if self.size is None:
            raise UserError("a trick of this recipe needs the size of the training data: attach with "
                            "train_data=your_loader (or steps_per_epoch)")
        return self.size

    def batches(self, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        if self.data is None:
            raise UserError("a trick of this recipe reads the training data once more at the end (SWA's "
                            "BatchNorm statistics): attach with train_data=your_loader")
        if hasattr(self.data, "batches"):  # automl's own split
            yield from self.data.batches(batch_size)
            return
        for x, y in self.data:
            yield x.to(self.device), y.to(self.device)


def _size_of(data: Any, batch_size: int, steps_per_epoch: int | None) -> int | None:
    """How many training samples: an automl split's or a DataLoader's dataset's, else steps x batch."""
    for holder in (data, getattr(data, "dataset", None)):
        if holder is not None and hasattr(holder, "__len__") and not hasattr(holder, "batch_size"):
            return len(holder)
    return steps_per_epoch * batch_size if steps_per_epoch else None


class _Classes:
    """What the tricks see of your data set: how many classes (mixup's one-hot targets)."""

    def __init__(self, num_classes: int | None) -> None:
        self._num_classes = num_classes

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            raise UserError("a trick of this recipe needs the number of classes: attach with num_classes=N")
        return self._num_classes


__all__ = ["Attached"]
