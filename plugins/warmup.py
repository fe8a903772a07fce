"""Linear learning-rate warmup over the first fraction of the budget.

Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour";
He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks".
Multiplies whatever LR schedule owns the run, so it composes with any of them.
"""

from __future__ import annotations

from automl import Trick, hookimpl
from automl.checks import number


def warmup_factor(progress: float, fraction: float) -> float:
    """From ~0 up to 1 linearly over ``[0, fraction]``, then 1."""
    if fraction <= 0 or progress >= fraction:
        return 1.0
    return max(progress, 1e-8) / fraction


class Warmup(Trick):
    name = "warmup"

    @classmethod
    def search_space(cls, trial):
        return {"fraction": trial.suggest_float("fraction", 0.01, 0.3, log=True)}

    def __init__(self, fraction: float = 0.05) -> None:
        number(self.name, "fraction", fraction, low=0, high=1, high_open=True)
        self.fraction = fraction

    def lr_factor(self, progress: float) -> float:
        return warmup_factor(progress, self.fraction)


@hookimpl
def automl_register_tricks():
    return [Warmup]
