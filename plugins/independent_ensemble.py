"""Independent ensembles: M models trained from scratch, one after another, in the time of one, then averaged.

The baseline that Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free", is to be measured
against: the budget is cut into ``members`` equal parts of progress, as snapshot_ensemble cuts it into
cycles, but each part starts from *fresh* random weights (a seed of its own, derived from the trial's)
with the optimizer state reset, and runs its own full schedule (a cosine from ``alpha0`` to about zero,
as a snapshot cycle does). So the two differ only in where each part starts: a snapshot cycle from the
previous cycle's weights, a member from scratch. Inference averages the softmax of the M members, so it
costs M forward passes (``inference_cost``). The first member starts from the trial's own initial
weights, so it is paired with the other arms of a comparison at the same seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from automl import Trick, hookimpl
from automl.checks import integer, number
from automl import INFERENCE_COST, PLANNED_INFERENCE_COST
from automl_plugins._shared import MeanSoftmax, weights_copy
from automl_plugins.snapshot_ensemble import cycle_of, snapshot_lr_factor


def member_seed(seed: int, member: int) -> int:
    """The seed of member ``member``'s initial weights (member 0 keeps the trial's own, drawn from ``seed``).

    Mixed through a ``SeedSequence`` rather than ``seed + member``: trials train with consecutive seeds,
    and trial n's second member must not start as trial n + 1's model does.
    """
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0])


class IndependentEnsemble(Trick):
    name = "independent_ensemble"
    owns = ("lr_schedule", "inference")

    @classmethod
    def search_space(cls, trial):
        return {"members": trial.suggest_int("members", 2, 8),
                "alpha0": trial.suggest_float("alpha0", 0.05, 0.4, log=True)}

    def __init__(self, members: int = 4, alpha0: float = 0.1) -> None:
        """``members``: the models trained (M), each for 1/M of the budget; ``alpha0``: the LR each
        starts at, which replaces the study's base LR."""
        integer(self.name, "members", members)
        number(self.name, "alpha0", alpha0, low=0, high=math.inf, low_open=True, high_open=True, must="a positive LR")
        self.members = members
        self.alpha0 = float(alpha0)
        self._reset()

    def _reset(self) -> None:
        self.finished: list[dict[str, torch.Tensor]] = []
        """The final weights of each member trained so far, first first."""
        self.seeds: list[int | None] = [None]
        """The seed each member's weights were drawn from (None: the trial's own model)."""
        self._member = 0
        self._ensemble = MeanSoftmax()

    def setup(self, run) -> None:
        self._reset()
        run.base_lr = self.alpha0
        run.attrs[PLANNED_INFERENCE_COST] = self.members  # what a prediction will cost once trained

    def lr_factor(self, progress: float) -> float:
        return snapshot_lr_factor(progress, self.members)

    def on_step_start(self, run) -> None:
        member = cycle_of(run.progress, self.members)
        if member > self._member:
            # No step of the new member has run: these weights end the previous one.
            self._keep(run)
            self._member = member
            self._start_fresh(run, member)

    def _start_fresh(self, run, member: int) -> None:
        """Load fresh weights into the live model (the optimizer keeps its params) and forget the optimizer's
        state (momentum, Adam's moments and step counts), so the member trains as from scratch."""
        seed = member_seed(run.seed, member)
        run.model.load_state_dict(run.fresh_model(seed).state_dict())
        run.optimizer.state.clear()
        self.seeds.append(seed)

    def on_end(self, run) -> None:
        self._keep(run)
        for i, state in enumerate(self.finished, 1):
            run.weights[f"{self.name}.{i}"] = state

    def _keep(self, run) -> None:
        self.finished.append(weights_copy(run.model))
        run.attrs[f"{self.name}.members"] = len(self.finished)
        run.attrs[INFERENCE_COST] = len(self.finished)

    def state_dict(self, run) -> dict:
        return {"finished": list(self.finished), "seeds": list(self.seeds), "member": self._member}

    def load_state_dict(self, run, state: dict) -> None:
        self.finished, self.seeds, self._member = list(state["finished"]), list(state["seeds"]), state["member"]

    def predict(self, run, x: torch.Tensor) -> torch.Tensor | None:
        return self._ensemble(run, self.finished, x)


@hookimpl
def automl_register_tricks():
    return [IndependentEnsemble]
