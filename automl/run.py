"""The run state handed to a trick's hooks: the model, optimizer, loss, data and progress of one training run."""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from automl.budget import Budget

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Batches(Protocol):
    """What a trick sees of the run's training loader (``automl.train.loader``): the batch size, which a trick
    that owns ``batch_size`` may set in ``on_epoch_start``, and the split it draws from."""

    batch_size: int
    split: Any


class Classes(Protocol):
    """What a trick sees of the run's data set (``automl.train.splits.Dataset``): how many classes it has."""

    num_classes: int


class Attrs(dict):
    """``Run.attrs``: a dict that refuses, when it is set, a value the trial could not store as JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.update(*args, **kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"run.attrs[{key!r}] = {value!r} cannot be stored with the trial as JSON ({exc})") from None
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]


@dataclass(eq=False)
class Run:
    """What one training run is made of, and where it is. Tricks read it and may replace parts of it.

    ``progress`` is spent / budget in [0, 1]; every schedule should be a function of it,
    so that it lands on the end of the budget whatever the speed of a step.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Criterion
    loader: Batches
    data: Classes
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
    attrs: dict[str, Any] = field(default_factory=Attrs)
    """JSON-able facts a trick wants stored with the trial (prefix keys with the trick's name); a value that
    is not JSON is refused when it is set (TypeError naming the key).
    ``INFERENCE_COST`` (``"inference_cost"``): forward passes per prediction (1 unless a trick ensembles)."""
    weights: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Extra weights a trick wants kept with the trial in the artifact store, beside the trained model:
    name (prefixed with the trick's) to the ``state_dict`` of a model of the same architecture, such
    as an ensemble's snapshots or an average. Set them in ``on_end``."""
    context: "TrialContext | None" = None
    """What the study knows beyond this run (e.g. its best model so far); None outside a study."""
    seed: int = 0
    """The run's training seed (the trial's): a trick that draws weights of its own derives its seeds from it."""
    build_model: Callable[[], nn.Module] | None = field(default=None, repr=False)
    """Builds a new model of this run's architecture from torch's global RNG, as the run's own model was built;
    None where the run was handed only a model (``fresh_model`` then re-initialises a copy)."""
    after_backward_hooks: list[Callable[["Run"], None]] = field(default_factory=list, repr=False)
    """The tricks' ``after_backward`` hooks, which ``step_optimizer`` calls; set by the trainer."""
    rank: int = 0
    """This process's rank among the ``world_size`` processes that train one trial on several devices
    (``automl run --gpus-per-trial K``): every rank runs every hook, on its own shard of each batch, and holds
    the same weights after every step. Only rank 0's ``attrs``, ``weights`` and result are kept; a trick with a
    side effect of its own (a file it writes) does it where ``is_main``."""
    world_size: int = 1
    sync_gradients: Callable[["Run"], None] | None = field(default=None, repr=False)
    """Averages the gradients over the ranks, first thing in ``step_optimizer``; None on one device."""

    def __post_init__(self) -> None:
        if not isinstance(self.attrs, Attrs):
            self.attrs = Attrs(self.attrs)

    @property
    def is_main(self) -> bool:
        """True on the one rank that reports the trial (always, on one device)."""
        return self.rank == 0

    def amp(self) -> contextlib.AbstractContextManager:
        """The autocast context of this run's forward passes (a no-op in full precision)."""
        return torch.autocast(**self.autocast) if self.autocast else contextlib.nullcontext()

    def scores_of(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``model``'s scores for ``x`` as evaluation computes them: eval mode, no grad, this run's autocast.

        For the extra models of a trick: an averaged copy, a teacher, a snapshot.
        """
        with torch.no_grad(), self.amp():
            return model.eval()(x)

    def fresh_model(self, seed: int) -> nn.Module:
        """A new model of this run's architecture, on its device, with the initial weights ``seed`` draws.

        Built as the run's own model was (``build_model`` under ``torch.manual_seed(seed)``), so a custom
        initialisation is kept; without a builder, a copy of the model whose every module with
        ``reset_parameters`` is re-initialised. Torch's global RNG is left as it was.
        """
        with torch.random.fork_rng(devices=[]):  # models are built on the CPU, then moved
            torch.manual_seed(seed)
            if self.build_model is not None:
                model = self.build_model()
            else:
                model = copy.deepcopy(self.model)
                for module in model.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
                    if hasattr(module, "reset_running_stats"):
                        module.reset_running_stats()
        return model.to(self.device)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward through ``loss``, scaled by the run's ``grad_scaler`` when there is one."""
        (loss if self.grad_scaler is None else self.grad_scaler.scale(loss)).backward()

    def step_optimizer(self) -> None:
        """Apply the gradients the params hold (averaged over the ranks of a trial on several devices): unscaled,
        then shown to every ``after_backward`` hook, then stepped (through the ``grad_scaler`` when there is one).
        A trick that owns the step calls it once."""
        scaler = self.grad_scaler
        if self.sync_gradients is not None:
            self.sync_gradients(self)  # scaled alike on every rank, so averaged before the unscale
        if self.after_backward_hooks:
            if scaler is not None:
                scaler.unscale_(self.optimizer)  # so the hooks see the true gradients
            for hook in self.after_backward_hooks:
                hook(self)
        if scaler is None:
            self.optimizer.step()
        else:
            scaler.step(self.optimizer)
            scaler.update()

    def wrap_criterion(self, wrap: Callable[[Criterion], Criterion]) -> None:
        """Replace the loss by ``wrap(criterion)``, a criterion built around the current one.

        Called in ``setup``: tricks that wrap the loss compose in their ``order``, the latest outermost.
        """
        self.criterion = wrap(self.criterion)

    def replace_optimizer(self, make: Callable[[Any], torch.optim.Optimizer]) -> None:
        """Use ``make(params or param groups)`` as this run's optimizer from now on, ``regroup`` included.

        For a trick that owns ``"optimizer"``, in ``setup``. The current param groups are kept with the
        options tricks gave them (``weight_decay``, ``lr_scale``, ...) but not the old kind's defaults.
        """
        defaults = self.optimizer.defaults
        groups = [{k: v for k, v in group.items() if k == "params" or k not in defaults or v != defaults[k]}
                  for group in self.optimizer.param_groups]
        self.make_optimizer = make
        self.optimizer = make(groups)

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


def default_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The trainer's step when no trick owns ``"step"``: forward, backward, optimizer step (with the
    ``after_backward`` hooks); returns the loss tensor without reading it (reading it synchronises)."""
    with run.amp():
        loss = run.criterion(run.model(x), y)
    run.optimizer.zero_grad(set_to_none=True)
    run.backward(loss)
    run.step_optimizer()
    return loss


@dataclass(frozen=True)
class TrialContext:
    """The study around one trial, as tricks may need it (a teacher for distillation, say)."""

    study_name: str
    trial_number: int
    best_checkpoint: Callable[[], Any]
    """Returns the path of the best completed trial's saved model, or None when there is none yet."""
    model: nn.Module | None = None
    """A model of the study's architecture (untrained, on the CPU), for ``unavailable`` to tell whether a trick
    applies to it; None where none is at hand."""
