"""The tricks' hooks as the training loop calls them: only those a trick overrides, and every trick told once
how its trial ended."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from automl.run import Run
from automl.trick import HOOKS, Trick, overridden


class TrickHooks:
    """The hooks the tricks override, one list of bound methods per hook in trick order; built once per run,
    so that the loop never calls a no-op hook."""

    __slots__ = HOOKS
    setup: list[Callable]
    on_end: list[Callable]
    on_trial_end: list[Callable]
    lr_factor: list[Callable]
    on_epoch_start: list[Callable]
    on_step_start: list[Callable]
    transform_batch: list[Callable]
    train_step: list[Callable]
    after_backward: list[Callable]
    on_step_end: list[Callable]
    on_rung: list[Callable]
    predict: list[Callable]

    def __init__(self, tricks: Sequence[Trick]) -> None:
        for name in HOOKS:
            setattr(self, name, [getattr(t, name) for t in tricks if overridden(t, name)])
        if len(self.train_step) > 1:
            owners = [t.name for t in tricks if overridden(t, "train_step")]
            raise ValueError(f"tricks {' and '.join(owners)} each replace the training step; one may own 'step'")

    def start_step(self, run: Run, progress: float, x: torch.Tensor,
                   y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start a step at ``progress``: its LR (the base LR times every schedule's factor) on every param group
        (times the group's ``lr_scale``), the step-start hooks, then the batch as the transforms return it."""
        run.progress = progress
        run.lr = run.base_lr * math.prod(f(progress) for f in self.lr_factor)
        for group in run.optimizer.param_groups:
            group["lr"] = run.lr * group.get("lr_scale", 1.0)
        for on_step_start in self.on_step_start:
            on_step_start(run)
        for transform in self.transform_batch:
            x, y = transform(run, x, y)
        return x, y

    def end_trial(self, run: Run, ended: str, error: BaseException | None = None) -> None:
        """Tell every trick how the run ended, each once. When it failed, a hook that raises too adds a note to
        the ``error`` that failed it; otherwise the first such exception is raised once all were told."""
        raised = None
        for on_trial_end in self.on_trial_end:
            try:
                on_trial_end(run, ended)
            except Exception as exc:  # noqa: BLE001 - the other tricks are still told
                if error is not None:
                    error.add_note(f"{on_trial_end.__self__.name}.on_trial_end raised too: {exc!r}")
                raised = raised or exc
        if raised is not None and error is None:
            raise raised
