"""What several built-in tricks do alike: ensembles of weights, draws on the batch's device, weight averages.

Not a plugin (no entry point names it): the tricks that share a piece import it from here, so it is written once.
Private to the built-ins: a third-party trick does each of these with a few lines of torch, and a public
helper would be a promise to keep its shape.
"""

from __future__ import annotations

import copy
from typing import ClassVar, Collection

import torch
from torch.optim.swa_utils import AveragedModel

from automl import Trick
from automl.train.checkpoints import generator_state

# -- ensembles of weights (snapshot_ensemble, independent_ensemble) ---------------------------------


def weights_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights and buffers now, detached from it and from its later steps."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


class MeanSoftmax:
    """An ensemble's prediction: the mean of the softmax of the run's model under each set of weights."""

    def __init__(self) -> None:
        # One spare copy of the model, made at the first prediction, takes each set in turn: the live model
        # keeps its own weights, and the ensemble holds one model's worth of modules whatever its size.
        self._spare: torch.nn.Module | None = None

    def __call__(self, run, members: Collection[dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor | None:
        """The mean softmax over ``members`` (float32), or None before there is any."""
        if not members:
            return None
        if self._spare is None:
            self._spare = copy.deepcopy(run.model)
        total = None
        for state in members:
            self._spare.load_state_dict(state)
            probs = run.scores_of(self._spare, x).float().softmax(dim=1)
            total = probs if total is None else total + probs
        return total / len(members)


# -- a trick's own random draws on the device (cutout, mixup) ---------------------------------------


class DeviceGenerator:
    """A trick's own torch generator, seeded per trial, made on the device of the batches it draws for."""

    def __init__(self, run, name: str, seed: int | None) -> None:
        """``seed`` None takes ``torch.initial_seed()``, which the study sets per trial, so runs are reproducible
        either way; the seed taken is recorded as ``run.attrs["<name>.seed"]``."""
        self.seed = torch.initial_seed() if seed is None else seed
        run.attrs[f"{name}.seed"] = self.seed
        self._generator: torch.Generator | None = None

    def on(self, device: torch.device) -> torch.Generator:
        """The generator on ``device``: drawing on the batch's device needs no copy and no synchronisation."""
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def state(self) -> torch.Tensor | None:
        """The generator's state for the trick's checkpoint (None before its first draw)."""
        return generator_state(self._generator)

    def load(self, run, state: torch.Tensor | None) -> None:
        """Go on from a checkpoint's ``state``, on the run's device."""
        if state is not None:
            self._generator = torch.Generator(device=run.device)
            self._generator.set_state(state)


# -- an average of the weights that predicts in the model's place (ema, swa) ------------------------


class WeightAverage(Trick):
    """A trick that keeps ``averaged``, an ``AveragedModel`` of the run's model, and predicts with it."""

    owns = ("inference",)
    average_buffers: ClassVar[bool] = False
    """Whether the buffers (BatchNorm's running statistics) are averaged with the weights; if not, the first
    update copies them and the trick recomputes them for the average."""
    averaged: AveragedModel | None

    def update_average(self, run, multi_avg_fn=None) -> None:
        """Average the model's weights in, with ``multi_avg_fn`` from now on if given."""
        if self.averaged is None:
            # Made here, not in setup, so that it copies the model every trick's setup has finished with.
            self.averaged = AveragedModel(run.model, use_buffers=self.average_buffers)
        if multi_avg_fn is not None:
            self.averaged.multi_avg_fn = multi_avg_fn
        self.averaged.update_parameters(run.model)
        run.attrs[f"{self.name}.updates"] = int(self.averaged.n_averaged)

    def on_end(self, run) -> None:
        if self.averaged is not None:
            run.weights[self.name] = self.averaged.module.state_dict()

    def state_dict(self, run) -> dict:
        return {"averaged": None if self.averaged is None else self.averaged.state_dict()}

    def load_state_dict(self, run, state: dict) -> None:
        if state["averaged"] is not None:
            self.averaged = AveragedModel(run.model, use_buffers=self.average_buffers)
            self.averaged.load_state_dict(state["averaged"])

    def predict(self, run, x: torch.Tensor) -> torch.Tensor | None:
        if self.averaged is None:
            return None
        return run.scores_of(self.averaged.module, x)
