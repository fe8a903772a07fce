"""Exponential decay of the learning rate, from the base LR to ``final`` times it at the end of the budget.

The continuous form of the exponential schedules of Szegedy et al. 2016, "Rethinking the Inception
Architecture for Computer Vision" (times 0.94 every two epochs): the LR is ``final ** progress`` times the
base, so it falls by the same ratio over every equal stretch of the budget and lands on ``final`` at its
end, whatever the speed of a step. A plain baseline for cyclic schedules such as Snapshot Ensembles
(Huang et al. 2017), which compare with step decay only.
"""

from __future__ import annotations

from automl import Trick, hookimpl
from automl.checks import number


def exp_decay_factor(progress: float, final: float) -> float:
    """``final ** progress``: 1 at the start, ``final`` at the end of the budget."""
    return final ** progress


class ExpDecay(Trick):
    name = "exp_decay"
    owns = ("lr_schedule",)

    @classmethod
    def search_space(cls, trial):
        # From ten to a thousand times less at the end, log scale; step_decay's default ends a hundred times less.
        return {"final": trial.suggest_float("final", 1e-3, 0.1, log=True)}

    def __init__(self, final: float = 0.01) -> None:
        number(self.name, "final", final, low=0, high=1, low_open=True, label="final LR factor")
        self.final = float(final)

    def lr_factor(self, progress: float) -> float:
        return exp_decay_factor(progress, self.final)


@hookimpl
def automl_register_tricks():
    return [ExpDecay]
