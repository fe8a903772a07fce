"""Linear decay of the learning rate to zero at the end of the budget.

Li, Yumer & Ramanan 2020, "Budgeted Training: Rethinking Deep Neural Network Training Under Resource
Constraints": of the schedules it compares (step, exponential, cosine, ...), the one that decays
linearly to zero exactly when the budget ends does best, most clearly at small budgets. The LR is ``1 - progress`` times the base (``final`` is an option
for a floor; the paper's is zero).
"""

from __future__ import annotations

from automl import Trick, hookimpl
from automl.checks import number


def linear_decay_factor(progress: float, final: float = 0.0) -> float:
    """``1 - (1 - final) * progress``: 1 at the start, ``final`` at the end of the budget."""
    return 1.0 - (1.0 - final) * progress


class LinearDecay(Trick):
    name = "linear_decay"
    owns = ("lr_schedule",)

    # No search space: the paper's schedule has no parameter; a study searches only whether it is on.

    def __init__(self, final: float = 0.0) -> None:
        """``final``: the LR factor the decay ends at, in [0, 1) (0, the paper's, unless a study sets it)."""
        number(self.name, "final", final, low=0, high=1, high_open=True, label="final LR factor")
        self.final = float(final)

    def lr_factor(self, progress: float) -> float:
        return linear_decay_factor(progress, self.final)


@hookimpl
def automl_register_tricks():
    return [LinearDecay]
