"""The Trick base class that plugins subclass: its search space, the resources it owns, and its no-op hooks."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch

from automl.run import Run, TrialContext, default_step

RESOURCES = {
    "lr_schedule": "the LR factor of every step (cosine, step decay, one-cycle, ...)",
    "batch_size": "the loader's batch size",
    "inference": "the scores evaluation uses (predict): an average, an ensemble",
    "step": "the whole training step, forward to optimizer step (train_step)",
    "optimizer": "the kind of optimizer, replaced through Run.replace_optimizer",
}
"""The resources a trick may own (``Trick.owns``), with what owning each means. The host refuses any other name
in ``owns`` (a typo such as ``lr_shedule`` would silently be a resource nobody else owns) unless the trick
declares it as a resource of its own, in ``Trick.declares``."""


class Trick:
    """One training trick: its search space, the resources it owns, and lifecycle hooks.

    Subclasses set ``name`` and override what they need; every hook is a no-op here and
    the trainer only calls the hooks a subclass overrides. Parameters are suggested in
    ``search_space`` (define-by-run) under short names: the host prefixes them with
    ``name`` so ``fraction`` becomes ``warmup.fraction`` in the study. The dict it returns
    is passed to ``__init__``, so a trick can also be built by hand with the same keywords.
    """

    name: ClassVar[str]
    owns: ClassVar[tuple[str, ...]] = ()
    """Resources this trick controls exclusively, from ``RESOURCES`` (``"lr_schedule"``, ``"step"``, ...).
    Where several enabled tricks own one resource the host lets each trial pick one."""
    declares: ClassVar[tuple[str, ...]] = ()
    """New resources this trick may own beside ``RESOURCES`` (``declares = ("my_resource",)``); every trick
    that owns one declares it, so that a misspelt name in ``owns`` is refused at load."""
    order: ClassVar[int] = 0
    """Where this trick's hooks run among the enabled ones, lowest first (ties by name): tricks that transform
    the batch run early (mixup -10), tricks that wrap the criterion late (distillation 10). Default 0."""
    state_version: ClassVar[int] = 1
    """The form of what :meth:`state_dict` returns: a checkpoint saved by another version is not resumed
    (the trial starts over from scratch, saying why)."""

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Suggest this trick's parameters on ``trial`` and return them as ``__init__`` keywords.

        Keywords of ``__init__`` that are not suggested here are *options*: a study file
        may set them (``[tricks.NAME] option = value``) and they are never searched.
        """
        return {}

    @classmethod
    def unavailable(cls, context: TrialContext | None, options: dict[str, Any]) -> str | None:
        """Why this trick cannot be offered to a trial (e.g. no teacher yet), or None.

        An unavailable trick is off for that trial, which records the reason; it is never a crash.
        """
        return None

    def __init__(self, **params: Any) -> None:
        if params:
            raise TypeError(f"{type(self).__name__} takes no parameters, got {sorted(params)}")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"

    # -- set-up and teardown ------------------------------------------------------------
    def setup(self, run: Run) -> None:
        """After the model, optimizer and criterion are built, before the first step."""

    def on_end(self, run: Run) -> None:
        """After the last step, before the final evaluation (not for a pruned or failed run)."""

    def on_trial_end(self, run: Run, ended: str) -> None:
        """Once at every end of a run that started training: ``ended`` is ``"complete"``, ``"pruned"`` or
        ``"failed"`` (``automl.records.ENDINGS``). Attrs set here are recorded, except for a failed trial; clean up here."""

    # -- every step ---------------------------------------------------------------------
    def lr_factor(self, progress: float) -> float:
        """A multiplier of the base LR at ``progress``; the factors of all tricks multiply."""
        return 1.0

    def on_epoch_start(self, run: Run) -> None:
        """Before each pass over the training split (the batch size may change here)."""

    def on_step_start(self, run: Run) -> None:
        """Before each step, after the LR of the step is set on the optimizer."""

    def transform_batch(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the batch to train on; targets may become soft (N, classes) distributions."""
        return x, y

    def train_step(self, run: Run, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The whole step in place of the trainer's, for the one trick that owns ``"step"`` (SAM's two passes).

        Forward under ``run.amp()`` with ``run.criterion``, ``run.optimizer.zero_grad``, ``run.backward(loss)``
        and, once, ``run.step_optimizer()`` (which runs the ``after_backward`` hooks); return the loss tensor.
        Only called when overridden; :func:`default_step`, the trainer's own, is the reference.
        """
        return default_step(run, x, y)

    def after_backward(self, run: Run) -> None:
        """Between backward and the optimizer step, with the gradients unscaled even under a ``GradScaler``:
        the gradients in ``p.grad`` may be changed in place (clipping, noise)."""

    def on_step_end(self, run: Run, loss: torch.Tensor) -> None:
        """After the optimizer step; ``loss`` is still on the device (reading it synchronises)."""

    # -- evaluation ---------------------------------------------------------------------
    def on_rung(self, run: Run, rung: int, val_error: float) -> None:
        """After the evaluation at a progress rung."""

    def predict(self, run: Run, x: torch.Tensor) -> torch.Tensor | None:
        """Scores (N, classes) for ``x`` to replace the model's, e.g. an ensemble's; None to abstain."""
        return None

    # -- checkpoints (not events: the trainer calls them when it saves or resumes a trial) ------
    def state_dict(self, run: Run) -> dict[str, Any]:
        """What this trick holds that a resumed run needs to go on exactly (averages, snapshots, its own
        generators' states), as tensors, numbers, strings, None and lists and dicts of them (a checkpoint
        is read with ``torch.load(weights_only=True)``). Nothing by default: a trick that keeps no state
        between steps, or rebuilds it in ``setup``, needs none. Bump ``state_version`` when its form changes."""
        return {}

    def load_state_dict(self, run: Run, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned, in a resumed run: after every trick's ``setup`` and
        before the model, optimizer and loader are given their saved states (so a trick that regroups
        the optimizer's params does it here as it did when the state was saved)."""


STATE_METHODS = ("state_dict", "load_state_dict")
"""Trick methods that are not event hooks: the trainer calls them only to save or resume a checkpoint."""

HOOKS = tuple(name for name, value in vars(Trick).items()
              if inspect.isfunction(value) and not name.startswith("_") and name not in STATE_METHODS)
"""The hooks, in the order ``Trick`` defines them: its public instance methods (search_space and unavailable
are class methods, asked before a trial trains), less ``STATE_METHODS``."""


def overridden(trick: Trick, hook: str) -> bool:
    """Whether ``trick`` implements ``hook`` itself, so the trainer skips the no-op ones."""
    return getattr(type(trick), hook) is not getattr(Trick, hook)
