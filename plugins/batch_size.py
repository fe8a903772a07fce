"""The batch size as a searched choice, with the LR scaled to it by the linear (or square-root) rule.

Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour" (linear scaling:
LR = 0.1 x B / 256); He et al. 2019, "Bag of Tricks for Image Classification with Convolutional
Neural Networks". The square-root rule (Krizhevsky 2014, "One weird trick for parallelizing
convolutional neural networks") keeps the gradient noise's variance instead of its mean.

With this trick on, the study's ``[train] lr`` means *the LR per 256 examples* (``reference``):
a trial with batch B trains at ``lr x B / 256`` (or ``x sqrt(B / 256)``), and ``[train]
batch_size`` is replaced. A study restricts the batches with ``size = {choices = [64, 128]}``
under ``[tricks.batch_size]``. A batch that does not fit in device memory fails the trial
with reason ``"oom"`` (the trainer converts the error), so the search learns to avoid it.
"""

from __future__ import annotations

import math

from automl import Trick, hookimpl
from automl.checks import integer, one_of

SIZES = [64, 128, 256, 512, 1024]
RULES = ("linear", "sqrt")


def scaled_lr(lr: float, batch_size: int, rule: str = "linear", reference: int = 256) -> float:
    """``lr`` given per ``reference`` examples, scaled to ``batch_size`` by ``rule``."""
    ratio = batch_size / reference
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    raise ValueError(f"unknown scaling rule {rule!r}; valid: {', '.join(RULES)}")


class BatchSize(Trick):
    name = "batch_size"
    owns = ("batch_size",)

    @classmethod
    def search_space(cls, trial):
        return {"size": trial.suggest_categorical("size", SIZES),
                "rule": trial.suggest_categorical("rule", list(RULES))}

    def __init__(self, size: int = 256, rule: str = "linear", reference: int = 256) -> None:
        """``size``: examples per step; ``rule``: ``"linear"`` or ``"sqrt"`` scaling of the LR;
        ``reference``: the batch the study's LR is given for (256 in Goyal et al.)."""
        integer(self.name, "size", size, must="a positive integer")
        one_of(self.name, "rule", rule, RULES, must=f"one of {', '.join(RULES)}")
        integer(self.name, "reference", reference, must="a positive integer")
        self.size, self.rule, self.reference = size, rule, reference

    def setup(self, run) -> None:
        run.loader.batch_size = self.size
        # A batch larger than the training split is the whole split: scale to what a step really sees.
        used = min(self.size, len(run.loader.split))
        run.base_lr = scaled_lr(run.base_lr, used, self.rule, self.reference)
        run.attrs["batch_size.batch"] = used
        run.attrs["batch_size.lr"] = run.base_lr


@hookimpl
def automl_register_tricks():
    return [BatchSize]
