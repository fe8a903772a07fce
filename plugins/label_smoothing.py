"""Label smoothing: train on targets ``(1 - eps) * onehot + eps / K``.

Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision";
He et al. 2019, "Bag of Tricks for Image Classification". Works on hard and soft targets
alike, so it composes with tricks that mix targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from automl import Trick, hookimpl
from automl.checks import number


def smooth_targets(targets: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """The smoothed distribution of class indices (N,) or soft targets (N, K)."""
    if targets.dim() == 1:
        targets = F.one_hot(targets, num_classes).float()
    return targets * (1.0 - epsilon) + epsilon / num_classes


class LabelSmoothing(Trick):
    name = "label_smoothing"
    owns = ()

    @classmethod
    def search_space(cls, trial):
        return {"epsilon": trial.suggest_float("epsilon", 0.0, 0.2)}

    def __init__(self, epsilon: float = 0.1) -> None:
        number("label smoothing", "epsilon", epsilon, low=0, high=1, high_open=True)
        self.epsilon = epsilon

    def setup(self, run) -> None:
        # PyTorch's cross-entropy smooths hard and soft targets in the fused kernel: no extra pass.
        run.criterion = torch.nn.CrossEntropyLoss(label_smoothing=self.epsilon)


@hookimpl
def automl_register_tricks():
    return [LabelSmoothing]
