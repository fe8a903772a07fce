"""mixup: train on convex combinations of pairs of examples and of their labels.

Zhang, Cisse, Dauphin & Lopez-Paz 2018, "mixup: Beyond Empirical Risk Minimization";
He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks"
(section 5.4, alpha = 0.2). One ``lam ~ Beta(alpha, alpha)`` per batch mixes the batch with a
permutation of itself; the targets become soft, so the criterion must accept (N, K)
distributions (the default cross-entropy does, and so does label smoothing's).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from automl import Trick, hookimpl
from automl.checks import integer, number
from automl.train.checkpoints import numpy_generator_state, set_numpy_generator_state
from automl_plugins._shared import DeviceGenerator


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, lam: float,
          perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * x + (1 - lam) * x[perm]`` and the same mixture of the targets as (N, K) float distributions.

    ``y`` holds class indices (N,) or is already soft (N, K).
    """
    targets = F.one_hot(y, num_classes).float() if y.dim() == 1 else y.float()
    return lam * x + (1.0 - lam) * x[perm], lam * targets + (1.0 - lam) * targets[perm]


class Mixup(Trick):
    name = "mixup"
    # First among the batch transforms: the teacher of distillation and any later transform see the mixed batch.
    order = -10

    @classmethod
    def search_space(cls, trial):
        return {"alpha": trial.suggest_float("alpha", 0.1, 0.4)}

    def __init__(self, alpha: float = 0.2, seed: int | None = None) -> None:
        """``alpha``: both parameters of the Beta distribution of ``lam`` (small: mostly mild mixes).
        ``seed``: of the draws of ``lam`` and the permutations; None takes ``torch.initial_seed()``
        at setup, which the study sets per trial, so runs are reproducible either way.
        """
        number(self.name, "alpha", alpha, low=0, low_open=True)
        if seed is not None:
            integer(self.name, "seed", seed, at_least=0, must="a non-negative integer or None")
        self.alpha = alpha
        self.seed = seed
        self.lam: float | None = None
        """The ``lam`` of the last batch mixed (for inspection)."""
        self.perm: torch.Tensor | None = None
        """The permutation of the last batch mixed (for inspection)."""

    def setup(self, run) -> None:
        self._generator = DeviceGenerator(run, self.name, self.seed)
        # torch has no Beta sampler that takes a generator. lam is one number per batch: drawn on
        # the host it costs no transfer, and as a Python float it reaches the kernels as an argument.
        self._rng = np.random.default_rng(self._generator.seed)
        self._num_classes = run.data.num_classes

    def state_dict(self, run) -> dict:
        return {"rng": numpy_generator_state(self._rng), "generator": self._generator.state()}

    def load_state_dict(self, run, state: dict) -> None:
        set_numpy_generator_state(self._rng, state["rng"])
        self._generator.load(run, state["generator"])

    def transform_batch(self, run, x, y):
        self.lam = float(self._rng.beta(self.alpha, self.alpha))
        self.perm = torch.randperm(len(x), generator=self._generator.on(x.device), device=x.device)
        return mixup(x, y, self._num_classes, self.lam, self.perm)


@hookimpl
def automl_register_tricks():
    return [Mixup]
