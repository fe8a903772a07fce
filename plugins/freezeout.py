"""FreezeOut: anneal each layer's learning rate to zero at its own time, then freeze it out of backward.

Brock, Lim, Ritchie & Weston 2017, "FreezeOut: Accelerate Training by Progressively Freezing Layers".

The layers are the model's top-level children that have parameters, in forward order
(automl's models are stacks whose children run in that order, classifier last; so do
torchvision's ResNets: ``conv1``, ``bn1``, ``layer1`` ... ``layer4``, ``fc``). A timm model
says its own layers in forward order (``group_matcher``, which timm's layer-wise LR decay
uses): its stem, then each block, then the head. Layer
``i`` of ``L`` trains until progress ``t_i`` with the LR ``lr_i(0) * (1 + cos(pi * p / t_i)) / 2``,
then it is frozen: its params leave the optimizer and stop requiring gradients, its
BatchNorms use their running statistics, and the frozen layers at the front of the
network run under ``torch.no_grad`` (in a stack) or build no graph because none of their
inputs and params needs a gradient (any other model), so that backward never reaches them.
That skipped backward work is the speed-up; under a budget of device time it buys more steps.

The schedule of ``t_i`` (section 2 of the paper, and its code):

* ``linear``: ``t_i = t0 + (1 - t0) * i / (L - 1)``, evenly spaced from ``t0`` to 1.
* ``cubic``: ``t_i = (t0 + (1 - t0) * i / (L - 1)) ** 3``, which gives later layers
  cubically more time. As in the authors' code (its README: "t_0 ... 0.8 (pre-cubed)
  by default"), ``t0`` is given *before* cubing, so the first layer freezes at
  ``t0 ** 3``; the paper quotes the cubed values (its t_0 = 0.512 is 0.8 pre-cubed).

Either way the last layer, the classifier, has ``t = 1`` and trains to the end. With
``scale_lr`` the initial LR of layer ``i`` is ``lr / t_i`` (the paper's "scaled"
variants: each layer travels about as far as it would with the full schedule).

The LR of the step (``run.lr``, which includes any warmup factor) and any ``lr_scale``
another trick gave a param group are kept: this trick multiplies them, so it owns the
LR schedule but not the base LR.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
from torch import nn

from automl import Run, Trick, hookimpl
from automl.checks import boolean, number, one_of

SCHEDULES = {"linear": 1, "cubic": 3}
"""Each schedule's power of the linearly spaced times."""

GROUP_KEY = "freezeout_layer"
"""The param-group option naming the layer a group belongs to."""


def freeze_times(num_layers: int, t0: float, schedule: str = "cubic") -> list[float]:
    """The progress ``t_i`` at which each of ``num_layers`` layers stops training; the last is 1."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"freezeout needs at least one layer, got {num_layers=}")
    number("freezeout", "t0", t0, low=0, high=1, low_open=True)
    one_of("freezeout", "schedule", schedule, SCHEDULES)
    if num_layers == 1:
        return [1.0]
    power = SCHEDULES[schedule]
    return [(t0 + (1 - t0) * i / (num_layers - 1)) ** power for i in range(num_layers)]


def layer_lr_factor(progress: float, t: float) -> float:
    """``(1 + cos(pi * progress / t)) / 2`` before ``t``, 0 from ``t`` on: one layer's cosine."""
    if progress >= t:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * progress / t))


def _forward_past_frozen(frozen: Sequence[nn.Module], rest: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """A stack's forward whose leading frozen children build no autograd graph."""
    with torch.no_grad():
        for child in frozen:
            x = child(x)
    for child in rest:
        x = child(x)
    return x


def forward_layers(model: nn.Module) -> list[list[nn.Module]]:
    """The layers of ``model`` in forward order, each a list of modules: timm's groups where the model has
    them (``group_matcher``), else each top-level child that has parameters."""
    matcher = getattr(model, "group_matcher", None)
    if callable(matcher):
        from timm.models import group_modules  # only a timm model has a group_matcher

        groups = group_modules(model, matcher(coarse=False))
        return [[model.get_submodule(name) for name in names] for _, names in sorted(groups.items()) if names]
    return [[child] for child in model.children() if any(True for _ in child.parameters())]


class FreezeOut(Trick):
    name = "freezeout"
    owns = ("lr_schedule",)

    @classmethod
    def search_space(cls, trial):
        return {"t0": trial.suggest_float("t0", 0.3, 0.9),
                "schedule": trial.suggest_categorical("schedule", ["linear", "cubic"]),
                "scale_lr": trial.suggest_categorical("scale_lr", [True, False])}

    def __init__(self, t0: float = 0.8, schedule: str = "cubic", scale_lr: bool = True) -> None:
        """Defaults are the authors' code's: cubic, scaled, ``t0 = 0.8`` (first freeze at 0.512)."""
        number(self.name, "t0", t0, low=0, high=1, low_open=True)
        one_of(self.name, "schedule", schedule, SCHEDULES)
        boolean(self.name, "scale_lr", scale_lr)
        self.t0 = float(t0)
        self.schedule = schedule
        self.scale_lr = scale_lr
        self._layers: list[nn.Module] = []
        self._times: list[float] = []
        self._frozen = 0
        """How many layers, from the front, are frozen (the times increase, so always a prefix)."""

    def setup(self, run: Run) -> None:
        model = run.model
        self._layers = forward_layers(model)
        if not self._layers:
            raise ValueError("freezeout needs a model whose top-level children have parameters")
        layer_of = {id(p): i for i, layer in enumerate(self._layers) for m in layer for p in m.parameters()}
        self._times = freeze_times(len(self._layers), self.t0, self.schedule)
        self._frozen = 0
        run.attrs["freezeout.freeze_times"] = list(self._times)
        run.attrs["freezeout.frozen_at_step"] = [None] * len(self._layers)

        # Keep the lr_scale another trick may have given a param (layer-wise LRs, no-decay groups).
        scale_of = {id(p): g.get("lr_scale", 1.0) for g in run.optimizer.param_groups for p in g["params"]}

        def options(name: str, param: nn.Parameter) -> dict:
            # Params of no layer (of the root module itself: a ViT's position embedding) train to the end.
            layer = layer_of.get(id(param), len(self._layers) - 1)
            scale = scale_of[id(param)] / (self._times[layer] if self.scale_lr else 1.0)
            return {GROUP_KEY: layer, "lr_scale": scale}

        run.regroup(options)

    def on_step_start(self, run: Run) -> None:
        while self._frozen < len(self._layers) and run.progress >= self._times[self._frozen]:
            self._freeze(run, self._frozen)
        for layer in self._layers[:self._frozen]:
            # The trainer's evaluation ends with model.train(), which would turn BatchNorm
            # back to batch statistics (and updating running stats) in a frozen layer.
            for module in layer:
                if module.training:
                    module.eval()
        for group in run.optimizer.param_groups:
            layer = group.get(GROUP_KEY)
            if layer is not None:
                group["lr"] *= layer_lr_factor(run.progress, self._times[layer])

    def _freeze(self, run: Run, i: int) -> None:
        optimizer = run.optimizer
        leaving = [g for g in optimizer.param_groups if g.get(GROUP_KEY) == i]
        for group in leaving:
            optimizer.param_groups.remove(group)
            for param in group["params"]:
                optimizer.state.pop(param, None)
        for module in self._layers[i]:
            for param in module.parameters():
                param.requires_grad_(False)
                param.grad = None
            module.eval()
        self._frozen = i + 1
        run.attrs["freezeout.frozen_at_step"][i] = run.step
        self._wrap_forward(run.model)

    def _wrap_forward(self, model: nn.Module) -> None:
        """Run every child before the first layer still training under ``torch.no_grad``.

        An instance attribute ``forward`` (a picklable ``functools.partial``) rather than
        hooks: the no-grad region is one ``with`` block, safe under exceptions, and
        neither the module tree nor the state_dict keys change. Only for ``nn.Sequential``,
        whose forward is exactly its children in order; for other models the frozen params
        no longer require grad, so autograd records nothing for them either.
        """
        if not isinstance(model, nn.Sequential):
            return
        children = list(model.children())
        if self._frozen < len(self._layers):
            first_training = next(k for k, c in enumerate(children) if c is self._layers[self._frozen][0])
        else:
            first_training = len(children)
        model.forward = functools.partial(_forward_past_frozen, tuple(children[:first_training]),
                                          tuple(children[first_training:]))

    def state_dict(self, run: Run) -> dict:
        return {"frozen": self._frozen}

    def load_state_dict(self, run: Run, state: dict) -> None:
        # Freezing again takes the frozen layers' groups out of the optimizer and wraps the forward, as it did
        # when they froze, so the saved optimizer state fits; the steps they froze at are in the saved attrs.
        for i in range(state["frozen"]):
            self._freeze(run, i)

    def on_end(self, run: Run) -> None:
        # Hand the model back as an ordinary module: its own forward, every param trainable.
        run.model.__dict__.pop("forward", None)
        for layer in self._layers[:self._frozen]:
            for module in layer:
                for param in module.parameters():
                    param.requires_grad_(True)


@hookimpl
def automl_register_tricks():
    return [FreezeOut]
