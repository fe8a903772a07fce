"""Step decay of the learning rate: times ``gamma`` at each milestone, given as fractions of the budget.

He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition" (LR / 10 at 32k and
48k of 64k iterations, i.e. at 0.5 and 0.75 of the run); the baseline schedule of Huang et al.
2017, "Snapshot Ensembles: Train 1, get M for free", and of Brock et al. 2017, "FreezeOut:
Accelerate Training by Progressively Freezing Layers".
"""

from __future__ import annotations

from typing import Sequence

from automl import Trick, hookimpl
from automl.checks import number

DEFAULT_MILESTONES = (0.5, 0.75)


def decays_done(progress: float, milestones: Sequence[float]) -> int:
    """How many milestones ``progress`` has reached (a milestone counts from ``p >= m`` on)."""
    return sum(1 for m in milestones if progress >= m)


def step_decay_factor(progress: float, milestones: Sequence[float] = DEFAULT_MILESTONES, gamma: float = 0.1) -> float:
    """``gamma ** k`` where ``k`` milestones are reached: 1, then gamma, then gamma^2, ..."""
    return gamma ** decays_done(progress, milestones)


def check_milestones(milestones: Sequence[float], name: str = "milestones") -> tuple[float, ...]:
    """``milestones`` as a tuple of floats strictly increasing in (0, 1); ValueError otherwise."""
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise ValueError(f"{name} must be a list of fractions of the budget, got {name}={milestones!r}")
    if not all(isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m < 1 for m in milestones):
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {name}={list(milestones)!r}")
    if any(a >= b for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {name}={list(milestones)!r}")
    return tuple(float(m) for m in milestones)


class StepDecay(Trick):
    name = "step_decay"
    owns = ("lr_schedule",)

    @classmethod
    def search_space(cls, trial):
        # The milestones are an option: the papers fix them at 0.5 and 0.75 of the run.
        return {"gamma": trial.suggest_float("gamma", 0.05, 0.3, log=True)}

    def __init__(self, gamma: float = 0.1, milestones: Sequence[float] = DEFAULT_MILESTONES) -> None:
        """``gamma``: the LR factor at each milestone, in (0, 1]; ``milestones``: fractions of the budget."""
        number(self.name, "gamma", gamma, low=0, high=1, low_open=True)
        self.gamma = float(gamma)
        self.milestones = check_milestones(milestones)

    def lr_factor(self, progress: float) -> float:
        return step_decay_factor(progress, self.milestones, self.gamma)


@hookimpl
def automl_register_tricks():
    return [StepDecay]
