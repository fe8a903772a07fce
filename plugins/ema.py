"""An exponential moving average of the weights (and BatchNorm statistics), evaluated in place of the model.

Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by Averaging"; the exponential
form is that of timm's ``ModelEmaV2`` and of David Page's "How to train your ResNet" (2018).

The decay is not searched per step but as a half-life in progress: the weight of a past
update halves every time ``half_life`` of the budget goes by. A fixed per-step decay averages
over a fixed number of steps, which is a different share of a 100-step trial than of a
10,000-step one, and under a time budget would change with the speed of the device; a
half-life in progress keeps its meaning whatever the budget. Each update uses the decay
``0.5 ** (advance / half_life)`` for the progress it follows, so for a budget of N steps
(updated every step) it is the usual fixed ``decay = 0.5 ** (1 / (N * half_life))``:
timm's 0.9998 over a 300-epoch ImageNet run is a half-life of about 0.005.
"""

from __future__ import annotations

import math

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from automl import hookimpl
from automl.checks import integer, number
from automl_plugins._shared import WeightAverage


def ema_decay(advance: float, half_life: float) -> float:
    """The decay of one update that follows ``advance`` of progress: ``0.5 ** (advance / half_life)``."""
    return 0.5 ** (max(advance, 0.0) / half_life)


class Ema(WeightAverage):
    name = "ema"
    average_buffers = True

    @classmethod
    def search_space(cls, trial):
        return {"half_life": trial.suggest_float("half_life", 0.002, 0.3, log=True)}

    def __init__(self, half_life: float = 0.02, every: int = 1) -> None:
        """``half_life``: the share of the budget over which the weight of an update halves;
        ``every``: update the average after every this many steps (an option, not searched)."""
        number(self.name, "half_life", half_life, low=0, high=math.inf, low_open=True, high_open=True,
               must="a positive fraction of the budget")
        integer(self.name, "every", every)
        self.half_life = float(half_life)
        self.every = every
        self.averaged: AveragedModel | None = None
        self._last_progress = 0.0

    def setup(self, run) -> None:
        self.averaged = None
        self._last_progress = 0.0

    def on_step_end(self, run, loss) -> None:
        if run.step % self.every:
            return
        # The first update copies the model; later ones lerp towards it by 1 - decay.
        decay = ema_decay(run.progress - self._last_progress, self.half_life)
        self.update_average(run, get_ema_multi_avg_fn(decay))
        self._last_progress = run.progress

    def state_dict(self, run) -> dict:
        return {**super().state_dict(run), "last_progress": self._last_progress}

    def load_state_dict(self, run, state: dict) -> None:
        super().load_state_dict(run, state)
        self._last_progress = state["last_progress"]


@hookimpl
def automl_register_tricks():
    return [Ema]
