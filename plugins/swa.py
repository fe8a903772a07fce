"""Stochastic weight averaging: an equal-weight average of the weights over the end of the budget.

Izmailov, Podoprikhin, Garipov, Vetrov & Wilson 2018, "Averaging Weights Leads to Wider Optima
and Better Generalization". The weights are averaged over the last ``fraction`` of the budget,
after every ``every`` steps; at the end the BatchNorm statistics of the average are recomputed
with one pass over the training split (``torch.optim.swa_utils.update_bn``), since the average
of the running statistics is not the statistics of the averaged network.

The paper samples once per epoch (or once per LR cycle); sampling by steps is the same
average with more samples, and unlike epochs it still means something for a trial only a
few epochs long. ``every`` set to the batches per epoch gives the paper's sampling. The
paper's constant or cyclic SWA LR is left to whichever trick owns the LR schedule, so SWA
composes with all of them. Until averaging starts the model predicts alone; rungs evaluated
while averaging, before the end, use the model's current BatchNorm statistics.
"""

from __future__ import annotations

from torch.optim.swa_utils import AveragedModel, update_bn

from automl import hookimpl
from automl.checks import integer, number
from automl_plugins._shared import WeightAverage

# Progress of a steps budget is step / N: a start that lands on a step may round to just above it.
_START_SLACK = 1e-9


def averaging(progress: float, fraction: float) -> bool:
    """Whether a step that starts at ``progress`` is in the last ``fraction`` of the budget."""
    return progress >= 1.0 - fraction - _START_SLACK


class Swa(WeightAverage):
    name = "swa"
    # Buffers are not averaged: they are copied at the first update, then recomputed in on_end.
    average_buffers = False

    @classmethod
    def search_space(cls, trial):
        return {"fraction": trial.suggest_float("fraction", 0.1, 0.5)}

    def __init__(self, fraction: float = 0.25, every: int = 1) -> None:
        """``fraction``: the share of the budget, at its end, whose weights are averaged;
        ``every``: average after every this many steps of it (an option, not searched)."""
        number(self.name, "fraction", fraction, low=0, high=1, low_open=True)
        integer(self.name, "every", every)
        self.fraction = float(fraction)
        self.every = every
        self._reset()

    def _reset(self) -> None:
        self.averaged: AveragedModel | None = None
        self._steps = 0  # steps taken inside the averaging window

    def setup(self, run) -> None:
        self._reset()

    def on_step_end(self, run, loss) -> None:
        if not averaging(run.progress, self.fraction):
            return
        self._steps += 1
        if self._steps % self.every:
            return
        self.update_average(run)

    def state_dict(self, run) -> dict:
        return {**super().state_dict(run), "steps": self._steps}

    def load_state_dict(self, run, state: dict) -> None:
        super().load_state_dict(run, state)
        self._steps = state["steps"]

    def on_end(self, run) -> None:
        if self.averaged is None:
            return
        split, batch_size = run.loader.split, run.loader.batch_size
        # The training images as they are, without augmentation, in the order they are stored.
        batches = (x for x, _ in split.batches(batch_size))
        with run.amp():
            # update_bn puts the model in train mode for the pass and restores its mode after.
            update_bn(batches, self.averaged.module)
        super().on_end(run)


@hookimpl
def automl_register_tricks():
    return [Swa]
