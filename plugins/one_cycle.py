"""The one-cycle LR schedule: linearly up from ``start`` to the base LR at ``peak``, then down to ``final``.

Smith 2018, "A disciplined approach to neural network hyper-parameters: Part 1" (1cycle);
Page 2018, "How to train your ResNet" (DAWNBench: piecewise linear 0 -> 0.4 at epoch 5 -> 0 at
epoch 24, so ``peak = 5/24``). Smith's cyclic momentum and final annihilation phase are not
reproduced: the momentum stays the optimizer's, and ``final`` sets where the descent ends.
"""

from __future__ import annotations

from automl import Trick, hookimpl
from automl.checks import number

PAGE_PEAK = 5 / 24


def one_cycle_factor(progress: float, peak: float = PAGE_PEAK, start: float = 0.0, final: float = 0.0) -> float:
    """Piecewise linear through ``(0, start)``, ``(peak, 1)`` and ``(1, final)``."""
    if progress < peak:
        return start + (1.0 - start) * progress / peak
    return 1.0 + (final - 1.0) * (progress - peak) / (1.0 - peak)


class OneCycle(Trick):
    name = "one_cycle"
    owns = ("lr_schedule",)

    @classmethod
    def search_space(cls, trial):
        return {"peak": trial.suggest_float("peak", 0.1, 0.4)}

    def __init__(self, peak: float = PAGE_PEAK, start: float = 0.0, final: float = 0.0) -> None:
        """``peak``: where the LR reaches the base LR, as a fraction of the budget, in (0, 1);
        ``start`` and ``final``: the LR factors at the first and at the end of the budget, in [0, 1]."""
        number(self.name, "peak", peak, low=0, high=1, low_open=True, high_open=True)
        number(self.name, "start", start, low=0, high=1, label="start LR factor")
        number(self.name, "final", final, low=0, high=1, label="final LR factor")
        self.peak, self.start, self.final = float(peak), float(start), float(final)

    def lr_factor(self, progress: float) -> float:
        return one_cycle_factor(progress, self.peak, self.start, self.final)


@hookimpl
def automl_register_tricks():
    return [OneCycle]
