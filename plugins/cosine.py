"""Cosine decay of the learning rate to zero at the end of the budget.

Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts" (one cycle,
no restart); He et al. 2019, "Bag of Tricks for Image Classification".
"""

from __future__ import annotations

import math

from automl import Trick, hookimpl
from automl.checks import number


def cosine_factor(progress: float, final: float = 0.0) -> float:
    """``final + (1 - final) * (1 + cos(pi * progress)) / 2``: 1 at the start, ``final`` at the end."""
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Cosine(Trick):
    name = "cosine"
    owns = ("lr_schedule",)

    @classmethod
    def search_space(cls, trial):
        # Decaying to exactly zero is the paper's recipe; a floor is the usual variant.
        return {"final": trial.suggest_float("final", 0.0, 0.1)}

    def __init__(self, final: float = 0.0) -> None:
        number(self.name, "final", final, low=0, high=1, label="final LR factor")
        self.final = final

    def lr_factor(self, progress: float) -> float:
        return cosine_factor(progress, self.final)


@hookimpl
def automl_register_tricks():
    return [Cosine]
