"""The Trick base class that plugins subclass, and the run state handed to its hooks."""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from automl.budget import Budget
    from automl.train.data import Dataset, InMemoryLoader

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

INFERENCE_COST = "inference_cost"
"""The ``Run.attrs`` key of the forward passes one prediction costs (1 unless a trick ensembles)."""


@dataclass(eq=False)
class Run:
    """What one training run is made of, and where it is. Tricks read it and may replace parts of it.

    ``progress`` is spent / budget in [0, 1]; every schedule should be a function of it,
    so that it lands on the end of the budget whatever the speed of a step.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Criterion
    loader: "InMemoryLoader"
    data: "Dataset"
    device: torch.device
    budget: "Budget"
    base_lr: float
    make_optimizer: Callable[[Any], torch.optim.Optimizer]
    """Builds the configured optimizer (kind, momentum, weight decay) over params or param groups."""
    progress: float = 0.0
    step: int = 0
    epoch: int = 0
    samples: int = 0
    lr: float = 0.0
    """The LR of this step before per-group ``lr_scale``: base_lr times every trick's lr_factor."""
    autocast: dict[str, Any] | None = None
    """Keyword arguments of ``torch.autocast`` for forward passes, or None for full precision."""
    grad_scaler: Any = None
    """A ``torch.amp.GradScaler`` the step uses for backward and optimizer step, when set."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """JSON-able facts a trick wants stored with the trial (prefix keys with the trick's name).
    ``INFERENCE_COST`` (``"inference_cost"``): forward passes per prediction (1 unless a trick ensembles)."""
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Extra weights a trick wants kept with the trial in the artifact store, beside the trained model:
    name (prefixed with the trick's) to the ``state_dict`` of a model of the same architecture, such
    as an ensemble's snapshots or an average. Set them in ``on_end``."""
    context: "TrialContext | None" = None
    """What the study knows beyond this run (e.g. its best model so far); None outside a study."""

    def amp(self) -> contextlib.AbstractContextManager:
        """The autocast context of this run's forward passes (a no-op in full precision)."""
        return torch.autocast(**self.autocast) if self.autocast else contextlib.nullcontext()

    def scores_of(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``model``'s scores for ``x`` as evaluation computes them: eval mode, no grad, this run's autocast.

        For the extra models of a trick: an averaged copy, a teacher, a snapshot.
        """
        with torch.no_grad(), self.amp():
            return model.eval()(x)

    def regroup(self, options_of: Callable[[str, nn.Parameter], dict[str, Any]]) -> None:
        """Split every param group by ``options_of(name, param)`` and rebuild the optimizer.

        Params for which it returns the same options stay together; the options update
        the group's own (``weight_decay``, ``lr_scale``, a trick's tag ...), so tricks
        that regroup compose in any order. Only before the first step: optimizer state is lost.
        """
        names = {id(p): n for n, p in self.model.named_parameters()}
        groups = []
        for group in self.optimizer.param_groups:
            base = {k: v for k, v in group.items() if k != "params"}
            split: dict[tuple, dict[str, Any]] = {}
            for param in group["params"]:
                options = options_of(names.get(id(param), ""), param)
                key = tuple(sorted(options.items()))
                split.setdefault(key, {**base, **options, "params": []})["params"].append(param)
            groups.extend(split.values())
        self.optimizer = self.make_optimizer(groups)


@dataclass(frozen=True)
class TrialContext:
    """The study around one trial, as tricks may need it (a teacher for distillation, say)."""

    study_name: str
    trial_number: int
    best_checkpoint: Callable[[], Any]
    """Returns the path of the best completed trial's saved model, or None when there is none yet."""


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
    """Resources this trick controls exclusively (``"lr_schedule"``, ``"batch_size"``, ...).
    Where several enabled tricks own one resource the host lets each trial pick one."""
    order: ClassVar[int] = 0
    """Where this trick's hooks run among the enabled ones, lowest first (ties by name):
    tricks that transform the batch run early, tricks that wrap the criterion late."""

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
        """After the last step, before the final evaluation."""

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

    def on_step_end(self, run: Run, loss: torch.Tensor) -> None:
        """After the optimizer step; ``loss`` is still on the device (reading it synchronises)."""

    # -- evaluation ---------------------------------------------------------------------
    def on_rung(self, run: Run, rung: int, val_error: float) -> None:
        """After the evaluation at a progress rung."""

    def predict(self, run: Run, x: torch.Tensor) -> torch.Tensor | None:
        """Scores (N, classes) for ``x`` to replace the model's, e.g. an ensemble's; None to abstain."""
        return None


HOOKS = tuple(name for name, value in vars(Trick).items() if inspect.isfunction(value) and not name.startswith("_"))
"""The hooks, in the order ``Trick`` defines them: its public instance methods (search_space and unavailable
are class methods, asked before a trial trains)."""


def overridden(trick: Trick, hook: str) -> bool:
    """Whether ``trick`` implements ``hook`` itself, so the trainer skips the no-op ones."""
    return getattr(type(trick), hook) is not getattr(Trick, hook)
