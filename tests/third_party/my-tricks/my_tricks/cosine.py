"""A cosine LR schedule to a floor: ``floor + (1 - floor) * (1 + cos(pi * progress)) / 2``."""

from __future__ import annotations

import math

from automl import Trick, hookimpl
from automl.checks import number


class Cosine(Trick):
    name = "cosine"
    owns = ("lr_schedule",)

    @classmethod
    def search_space(cls, trial):
        return {"floor": trial.suggest_float("floor", 0.0, 0.1)}

    def __init__(self, floor: float = 0.0) -> None:
        self.floor = float(number(self.name, "floor", floor, low=0, high=1))

    def lr_factor(self, progress: float) -> float:
        return self.floor + (1 - self.floor) * (1 + math.cos(math.pi * progress)) / 2


@hookimpl
def automl_register_tricks():
    return [Cosine]
