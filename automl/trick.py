"""The Trick base class that plugins subclass, and the run state handed to its hooks."""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from automl.errors import TrialFailed
from automl.records import TRICK_ERROR

if TYPE_CHECKING:
    from automl.budget import Budget
    from automl.train.data import Dataset
    from automl.train.loader import Loader

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

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
    loader: "Loader"
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


class TrickError(TrialFailed):
    """An exception from a trick's hook or ``__init__`` during a trial: that trial fails, the study goes on."""

    def __init__(self, trick: str, hook: str, step: int | None, error: BaseException) -> None:
        at = "before training" if step is None else f"at step {step}"
        super().__init__(TRICK_ERROR, f"{trick}.{hook} {at}: {type(error).__name__}: {error}")
        self.trick, self.hook, self.step, self.error = trick, hook, step, error


@dataclass(frozen=True)
class RaisedIn:
    """Where in a trick an exception was raised: the trick, its hook, and the run's step and progress then."""

    trick: Trick
    hook: str
    step: int | None
    progress: float | None
    hook_has_run: bool
    """Whether the hook was given the run (``lr_factor`` is not: its step is the loop's)."""

    def error(self, exc: BaseException) -> TrickError:
        return TrickError(self.trick.name, self.hook, self.step, exc)


def raised_in(exc: BaseException, trick: Trick | None = None) -> RaisedIn | None:
    """The outermost hook (or ``__init__``) of a trick (of ``trick``, if given) in ``exc``'s traceback, or None.

    Read from the traceback, so that calling a hook costs nothing extra; the step is that of the nearest
    ``run`` among the frames, also for a hook that is not given one.
    """
    frames = list(_frames(exc.__traceback__))
    for i, frame in enumerate(frames):
        owner, local = frame.f_locals.get("self"), frame.f_locals
        if frame.f_code.co_name in (*HOOKS, "__init__") and isinstance(owner, Trick) and trick in (None, owner):
            runs = [f.f_locals["run"] for f in reversed(frames[:i + 1]) if isinstance(f.f_locals.get("run"), Run)]
            own = isinstance(local.get("run"), Run)
            progress = local["run"].progress if own else local.get("progress")
            return RaisedIn(owner, frame.f_code.co_name, runs[0].step if runs else None,
                            progress if isinstance(progress, float) else None, own)
    return None


def _frames(tb: TracebackType | None):
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next
