"""Test-time flip averaging: predict the mean of the softmax of each image and of its mirror image.

Page 2018, "How to train your ResNet" (test-time augmentation by horizontal flips, in the final recipe);
after the test-time augmentation of Krizhevsky, Sutskever & Hinton 2012 ("ImageNet Classification with
Deep Convolutional Neural Networks", which averages ten crops and their reflections). Training is
untouched; a prediction costs two forward passes (``inference_cost`` = 2). It owns no resource: where a
trick that owns ``inference`` (an ensemble, an average) is on too, that trick's prediction is used and
this one abstains, so its order is late, and the cost is that of the evaluation that predicted last.
"""

from __future__ import annotations

import torch

from automl import INFERENCE_COST, PLANNED_INFERENCE_COST, Trick, hookimpl

FORWARD_PASSES = 2
"""The image and its mirror."""


def flip_average(scores_of, x: torch.Tensor) -> torch.Tensor:
    """The mean of ``softmax(scores_of(x))`` and ``softmax(scores_of(x mirrored left to right))``, in float32."""
    return 0.5 * (scores_of(x).float().softmax(dim=1) + scores_of(x.flip(-1)).float().softmax(dim=1))


class TTAFlip(Trick):
    name = "tta_flip"
    # After the tricks that own inference: the first prediction that is not None is the one evaluated.
    order = 100

    def __init__(self) -> None:
        self._reset()

    def setup(self, run) -> None:
        self._reset()
        # What a prediction will cost once trained: an ensemble's, which is used where one is on (it declared its
        # own in its earlier setup), else the two passes of this one.
        run.attrs.setdefault(PLANNED_INFERENCE_COST, FORWARD_PASSES)

    def _reset(self) -> None:
        self._predicting = False
        self._cost_before: int | None = None
        """The inference cost before this trick recorded its own, while its own is the one recorded."""

    def predict(self, run, x: torch.Tensor) -> torch.Tensor | None:
        if not self._predicting:  # the first batch of an evaluation
            self._predicting = True
            if self._cost_before is None:
                self._cost_before = run.attrs.get(INFERENCE_COST, 1)
            run.attrs[INFERENCE_COST] = FORWARD_PASSES
        return flip_average(lambda images: run.scores_of(run.model, images), x)

    def on_rung(self, run, rung: int, val_error: float) -> None:
        if not self._predicting and self._cost_before is not None:
            # Another trick predicted in this evaluation (an average that has started): its cost counts.
            if run.attrs.get(INFERENCE_COST) == FORWARD_PASSES:
                run.attrs[INFERENCE_COST] = self._cost_before
            self._cost_before = None
        self._predicting = False


@hookimpl
def automl_register_tricks():
    return [TTAFlip]
