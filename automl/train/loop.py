"""The budgeted training loop: trains until the budget is spent, evaluating at progress rungs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from automl.budget import Budget, DeviceClock, Progress
from automl.errors import TrialFailed
from automl.train.data import Dataset, InMemoryLoader, Split
from automl.train.settings import TrainSettings
from automl.trick import HOOKS, Run, Trick, TrialContext, overridden

# Reading the loss synchronises a GPU, so NaNs are looked for every this many steps.
NAN_CHECK_EVERY = 32

Reporter = Callable[[int, float, float], bool]
"""(rung, progress, val_error) -> True to stop the run early (pruned)."""


@dataclass
class TrainResult:
    """What a run measured. Errors are fractions in [0, 1]."""

    val_error: float
    """With the tricks' ``predict`` where one takes over inference (an ensemble), else the model's."""
    val_error_model: float
    """The trained model alone."""
    train_seconds: float
    eval_seconds: float
    steps: int
    epochs: float
    progress: float
    pruned: bool
    train_loss: float
    history: list[tuple[float, float]] = field(default_factory=list)
    """(progress, val_error) at each rung."""
    test_error: float | None = None
    test_error_model: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """The extra weights the tricks kept (see ``Run.weights``)."""

    @property
    def spent_seconds(self) -> float:
        return self.train_seconds + self.eval_seconds


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
          context: TrialContext | None = None) -> TrainResult:
    """Train ``model`` on ``data.train`` until ``budget`` is spent; the value is the final validation error.

    Only the training steps count towards the budget (and so towards progress);
    evaluation is timed apart and added to the device-seconds spent.
    """
    try:
        return _train(model, data, settings, budget, tricks, torch.device(device), seed, report, evaluate_test,
                      context)
    except torch.OutOfMemoryError as exc:
        _release_memory()
        raise TrialFailed("oom", str(exc).splitlines()[0]) from exc
    except RuntimeError as exc:
        if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
            _release_memory()
            raise TrialFailed("oom", str(exc).splitlines()[0]) from exc
        raise


def _train(model, data, settings, budget, tricks, device, seed, report, evaluate_test, context) -> TrainResult:
    if settings.searched():
        raise ValueError(f"settings still hold search ranges {sorted(settings.searched())}; resolve them first")
    model.to(device)
    padding = settings.crop_padding if settings.crop_padding is not None else max(1, data.input_shape[-1] // 8)
    loader = InMemoryLoader(data.train, settings.batch_size, augment=settings.augment, flip=settings.flip,
                            padding=padding, seed=seed)
    make_optimizer = lambda params: build_optimizer(settings, params)  # noqa: E731
    run = Run(model=model, optimizer=make_optimizer(model.parameters()), criterion=nn.CrossEntropyLoss(),
              loader=loader, data=data, device=device, budget=budget, base_lr=settings.lr,
              make_optimizer=make_optimizer, context=context, attrs={"inference_cost": 1})
    hooks = {name: [getattr(t, name) for t in tricks if overridden(t, name)] for name in HOOKS}
    for setup in hooks["setup"]:
        setup(run)

    progress = Progress(budget)
    train_clock, eval_clock = DeviceClock(device), DeviceClock(device)
    rung_points = [(k + 1) / settings.rungs for k in range(settings.rungs)]
    history: list[tuple[float, float]] = []
    errors = (math.nan, math.nan)
    loss_sum = torch.zeros((), device=device)
    p = epochs = 0.0
    pruned = False

    def evaluate_rung() -> None:
        nonlocal errors
        train_clock.stop()
        eval_clock.start()
        errors = evaluate(run, data.val, hooks["predict"], settings.eval_batch_size)
        eval_clock.stop()
        rung = len(history)
        history.append((p, errors[0]))
        for on_rung in hooks["on_rung"]:
            on_rung(run, rung, errors[0])

    train_clock.start()
    while p < 1.0:
        if run.epoch:
            # A pass the budget has no room for is not started, so no trick is told of it.
            p = progress.of(seconds=train_clock.read(), epochs=float(run.epoch), steps=run.step)
            if p >= 1.0:
                break
            run.progress = p  # so a pass-level decision (a new batch size) sees where the run is now
        for on_epoch_start in hooks["on_epoch_start"]:
            on_epoch_start(run)
        batches = len(loader)
        if batches == 0:
            raise ValueError("the training split is empty")
        pass_batches = iter(loader)
        for i in range(batches):
            epochs = run.epoch + i / batches
            p = progress.of(seconds=train_clock.read(), epochs=epochs, steps=run.step)
            if len(history) < settings.rungs - 1 and p >= rung_points[len(history)]:
                _check_finite(loss_sum, run.step)
                evaluate_rung()
                if report is not None and report(len(history) - 1, p, errors[0]):
                    pruned = True
                    break
                train_clock.start()
            if p >= 1.0:
                break
            x, y = next(pass_batches)  # drawn only once the budget allows the step
            run.progress = p
            run.lr = run.base_lr * math.prod(f(p) for f in hooks["lr_factor"])
            for group in run.optimizer.param_groups:
                group["lr"] = run.lr * group.get("lr_scale", 1.0)
            for on_step_start in hooks["on_step_start"]:
                on_step_start(run)
            for transform in hooks["transform_batch"]:
                x, y = transform(run, x, y)
            loss = _step(run, x, y)
            run.step += 1
            run.samples += len(x)
            loss_sum += loss.detach().float()
            if run.step % NAN_CHECK_EVERY == 0:
                _check_finite(loss_sum, run.step)
            for on_step_end in hooks["on_step_end"]:
                on_step_end(run, loss)
        else:
            run.epoch += 1
            epochs = float(run.epoch)
            continue
        break  # the budget is spent, or the run was pruned inside this pass

    _check_finite(loss_sum, run.step)
    train_clock.stop()
    run.progress = p
    if not pruned:
        for on_end in hooks["on_end"]:
            on_end(run)
        evaluate_rung()
        if report is not None:
            report(len(history) - 1, p, errors[0])

    test_error = test_error_model = None
    if evaluate_test:
        eval_clock.start()
        test_error, test_error_model = evaluate(run, data.test, hooks["predict"], settings.eval_batch_size)
        eval_clock.stop()
    return TrainResult(
        val_error=errors[0], val_error_model=errors[1], train_seconds=train_clock.elapsed,
        eval_seconds=eval_clock.elapsed, steps=run.step, epochs=epochs, progress=p, pruned=pruned,
        train_loss=float(loss_sum) / max(1, run.step), history=history,
        test_error=test_error, test_error_model=test_error_model, attrs=run.attrs,
        weights=run.weights)


def _step(run: Run, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimizer step; returns the loss tensor without reading it."""
    with run.amp():
        loss = run.criterion(run.model(x), y)
    run.optimizer.zero_grad(set_to_none=True)
    if run.grad_scaler is not None:
        run.grad_scaler.scale(loss).backward()
        run.grad_scaler.step(run.optimizer)
        run.grad_scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    return loss


@torch.no_grad()
def evaluate(run: Run, split: Split, predictors: Sequence[Callable] = (), batch_size: int = 1024) -> tuple[float, float]:
    """(error with the tricks' predict, error of the model alone) on ``split``."""
    was_training = run.model.training
    run.model.eval()
    wrong_model = torch.zeros((), dtype=torch.long, device=split.y.device)
    wrong = torch.zeros_like(wrong_model)
    try:
        for start in range(0, len(split), batch_size):
            x, y = split.x[start:start + batch_size], split.y[start:start + batch_size]
            with run.amp():
                scores = run.model(x)
                wrong_model += (scores.argmax(1) != y).sum()
                for predict in predictors:
                    other = predict(run, x)
                    if other is not None:
                        scores = other
                        break
            wrong += (scores.argmax(1) != y).sum()
    finally:
        run.model.train(was_training)
    n = max(1, len(split))
    return wrong.item() / n, wrong_model.item() / n


def _check_finite(loss_sum: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss_sum):
        raise TrialFailed("nan_loss", f"the training loss became {loss_sum.item()} by step {step}")


def _release_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
