"""Grow the batch instead of decaying the learning rate, up to a cap; the LR takes what the cap leaves.

Smith, Kindermans, Ying & Le 2018, "Don't Decay the Learning Rate, Increase the Batch Size"
(ICLR; arXiv 2017). Where step decay would multiply the LR by ``1 / factor`` (at ``milestones``,
fractions of the budget), this trick multiplies the batch by ``factor``; once the batch would
pass ``max_batch`` it stops there and the rest of the decay goes to the LR. So the SGD noise
scale, proportional to ``lr / batch``, follows the step-decay baseline at every milestone.

The loader keeps a pass's batch size, so a batch change lands at the first pass boundary at or
after its milestone, while the LR part (when the cap is hit) lands exactly at the milestone.
Until that boundary the old, smaller batch goes on at the undecayed LR. A decay point after the
last pass boundary of the budget changes only what the cap forces on the LR. Progress is counted
in the same units as the budget, so with an epoch budget of 4 and milestones (0.5, 0.75) the
batch grows at the starts of passes 2 and 3 (counting from 0) exactly. The initial batch is
``[train] batch_size``; a batch larger than the training split trains on the whole split.
"""

from __future__ import annotations

from typing import Sequence

from automl import Trick, hookimpl
from automl.checks import integer
from automl_plugins.step_decay import DEFAULT_MILESTONES, check_milestones, decays_done

MAX_BATCHES = [256, 512, 1024, 2048, 4096]


def ramp(progress: float, initial: int, factor: int, max_batch: int,
         milestones: Sequence[float] = DEFAULT_MILESTONES) -> tuple[int, float]:
    """(batch, LR factor) at ``progress`` for a run that starts at batch ``initial``.

    After ``k`` milestones the batch is ``initial * factor**k`` capped at ``max_batch`` (never
    below ``initial``), and ``lr_factor / batch == 1 / (initial * factor**k)``: the noise scale
    of step decay with ``gamma = 1 / factor``.
    """
    target = initial * factor ** decays_done(progress, milestones)
    batch = max(initial, min(target, max_batch))
    return batch, batch / target


class BatchRamp(Trick):
    name = "batch_ramp"
    owns = ("batch_size", "lr_schedule")

    @classmethod
    def search_space(cls, trial):
        return {"factor": trial.suggest_int("factor", 2, 5),
                "max_batch": trial.suggest_categorical("max_batch", MAX_BATCHES)}

    def __init__(self, factor: int = 5, max_batch: int = 1024,
                 milestones: Sequence[float] = DEFAULT_MILESTONES) -> None:
        """``factor``: batch multiplier at each milestone (Smith et al.: 5); ``max_batch``: the cap;
        ``milestones``: where step decay would decay the LR, as fractions of the budget."""
        integer(self.name, "factor", factor, at_least=2)
        integer(self.name, "max_batch", max_batch, must="a positive integer")
        self.factor, self.max_batch = factor, max_batch
        self.milestones = check_milestones(milestones)
        self._initial: int | None = None

    def setup(self, run) -> None:
        self._initial = run.loader.batch_size

    def state_dict(self, run) -> dict:
        # The batch the ramp is at is the loader's, which the checkpoint keeps; the ramp's start is its own.
        return {"initial": self._initial}

    def load_state_dict(self, run, state: dict) -> None:
        self._initial = state["initial"]

    def _plan(self, progress: float) -> tuple[int, float]:
        if self._initial is None:
            raise RuntimeError("batch_ramp needs setup(run) first: the ramp starts at the run's batch size")
        return ramp(progress, self._initial, self.factor, self.max_batch, self.milestones)

    def lr_factor(self, progress: float) -> float:
        return self._plan(progress)[1]

    def on_epoch_start(self, run) -> None:
        # The trainer sets run.progress at each pass boundary, before this hook.
        run.loader.batch_size = self._plan(run.progress)[0]
        run.attrs["batch_ramp.batch"] = run.loader.batch_size


@hookimpl
def automl_register_tricks():
    return [BatchRamp]
