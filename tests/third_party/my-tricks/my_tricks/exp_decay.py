"""Exponential LR decay: the LR factor is ``final ** progress``, from 1 at the start to ``final`` at the end of
the budget."""

from __future__ import annotations

from automl import Trick, hookimpl
from automl.checks import number


class ExpDecay(Trick):
    name = "exp_decay"
    owns = ("lr_schedule",)

    @classmethod
    def search_space(cls, trial):
        return {"final": trial.suggest_float("final", 1e-3, 0.3, log=True)}

    def __init__(self, final: float = 0.01) -> None:
        self.final = float(number(self.name, "final", final, low=0, high=1, low_open=True))

    def lr_factor(self, progress: float) -> float:
        return self.final ** progress


@hookimpl
def automl_register_tricks():
    return [ExpDecay]
