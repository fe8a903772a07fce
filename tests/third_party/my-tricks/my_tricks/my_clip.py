"""Gradient clipping by the global norm (Pascanu et al. 2013), in the ``after_backward`` hook: the gradients
are unscaled there even under a GradScaler, and a regrouped or replaced optimizer keeps it."""

from __future__ import annotations

import torch

from automl import Trick, hookimpl
from automl.checks import number


class MyClip(Trick):
    name = "my_clip"

    @classmethod
    def search_space(cls, trial):
        return {"max_norm": trial.suggest_float("max_norm", 0.1, 10.0, log=True)}

    def __init__(self, max_norm: float = 1.0) -> None:
        self.max_norm = float(number(self.name, "max_norm", max_norm, low=0, low_open=True))

    def after_backward(self, run) -> None:
        params = [p for group in run.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, self.max_norm)


@hookimpl
def automl_register_tricks():
    return [MyClip]
