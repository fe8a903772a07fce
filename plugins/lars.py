"""LARS: SGD with momentum whose step for each layer is scaled by that layer's trust ratio.

You, Gitman & Ginsburg 2017, "Large Batch Training of Convolutional Networks" (algorithm 1). For each
parameter tensor ("layer") w with gradient g and weight decay b, the local LR is
``trust * ||w|| / (||g|| + b ||w||)``, so every layer moves by about the same fraction of its norm
whatever the scale of its gradient; then ``v = m v + lr * local_lr * (g + b w)`` and ``w = w - v``.
Where ``||w||`` or ``||g||`` is zero (a bias or a BatchNorm gamma that starts at zero) the local LR is 1,
as in the common implementations, or those tensors would never move. It owns the optimizer: the study's
momentum and weight decay are kept (Nesterov's variant is not), and so are the options other tricks
give param groups (no weight decay on biases, a layer's LR scale).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from automl import Trick, hookimpl
from automl.checks import number

MOMENTUM = 0.9
"""The momentum when the study's optimizer has none (Adam): the paper's."""


def trust_ratio(weight: torch.Tensor, grad: torch.Tensor, trust: float, weight_decay: float) -> torch.Tensor:
    """``trust * ||w|| / (||g|| + weight_decay * ||w||)``, or 1 where ``||w||`` or ``||g||`` is zero (on the device)."""
    w_norm, g_norm = torch.linalg.vector_norm(weight), torch.linalg.vector_norm(grad)
    ratio = trust * w_norm / (g_norm + weight_decay * w_norm).clamp(min=1e-12)
    # Without a branch, so the device is never synchronised.
    return torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))


class LARSOptimizer(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling over params or param groups (each tensor is a layer)."""

    def __init__(self, params: Any, lr: float, momentum: float = MOMENTUM, weight_decay: float = 0.0,
                 trust: float = 0.001) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "trust": trust})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay, trust = group["lr"], group["momentum"], group["weight_decay"], group["trust"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                local = trust_ratio(p, grad, trust, decay)
                update = (grad + decay * p if decay else grad) * (local * lr).to(p.dtype)
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = update.clone()
                else:
                    state["velocity"].mul_(momentum).add_(update)
                p.sub_(state["velocity"])
        return loss


class LARS(Trick):
    name = "lars"
    owns = ("optimizer",)

    @classmethod
    def search_space(cls, trial):
        # The paper's 0.001 goes with its base LRs of 2 to 29; the studies' LRs are about a tenth of one,
        # which wants a larger coefficient for steps of a similar fraction of each layer's norm.
        return {"trust": trial.suggest_float("trust", 1e-3, 0.1, log=True)}

    def __init__(self, trust: float = 0.02) -> None:
        """``trust``: the trust coefficient (eta), > 0: the fraction of its norm each layer moves per unit LR."""
        number(self.name, "trust", trust, low=0, low_open=True, high=math.inf, high_open=True,
               must="a positive number")
        self.trust = float(trust)

    def setup(self, run) -> None:
        defaults = run.optimizer.defaults
        momentum = defaults.get("momentum", MOMENTUM)
        decay = defaults.get("weight_decay", 0.0)
        run.attrs["lars.replaced"] = type(run.optimizer).__name__
        run.replace_optimizer(lambda params: LARSOptimizer(params, lr=run.base_lr, momentum=momentum,
                                                           weight_decay=decay, trust=self.trust))


@hookimpl
def automl_register_tricks():
    return [LARS]
