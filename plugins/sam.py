"""Sharpness-aware minimisation: step with the gradient taken at the worst nearby weights.

Foret, Kleiner, Mobahi & Neyshabur 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization" (algorithm 1). Each step makes two forward and backward passes: the first gives the
gradient g at the weights w; the weights move to w + rho g / ||g|| (the ascent step, of norm rho); the
second pass gives the gradient there, which the configured optimizer applies to w. It owns the step.
Under a budget of device time a step costs about twice as much, which the comparison counts.
"""

from __future__ import annotations

from typing import Sequence

import torch

from automl import Trick, hookimpl


def ascent_step(grads: Sequence[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """SAM's perturbation of each weight: ``rho * g / ||g||``, with ``||g||`` the global L2 norm of ``grads``,
    so the perturbation's own norm is ``rho`` (zero where the gradient is zero or not finite)."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    # Without a branch, so the device is never synchronised: a zero or non-finite norm gives no perturbation.
    usable = torch.isfinite(norm) & (norm > 0)
    scale = rho / norm.clamp(min=1e-12)
    return [torch.where(usable, g * scale.to(g.dtype), torch.zeros_like(g)) for g in grads]


class SAM(Trick):
    name = "sam"
    owns = ("step",)

    @classmethod
    def search_space(cls, trial):
        return {"rho": trial.suggest_float("rho", 0.01, 0.5, log=True)}

    def __init__(self, rho: float = 0.05) -> None:
        if not rho > 0:
            raise ValueError(f"sam rho must be > 0, got {rho=}")
        self.rho = float(rho)

    def _loss(self, run, x, y):
        with run.amp():
            return run.criterion(run.model(x), y)

    def train_step(self, run, x, y):
        loss = self._loss(run, x, y)
        run.optimizer.zero_grad(set_to_none=True)
        # Under a GradScaler the gradients are scaled, which the direction g / ||g|| does not see.
        run.backward(loss)
        params = [p for g in run.optimizer.param_groups for p in g["params"] if p.grad is not None]
        with torch.no_grad():
            moves = ascent_step([p.grad for p in params], self.rho)
            torch._foreach_add_(params, moves)
        run.optimizer.zero_grad(set_to_none=True)
        run.backward(self._loss(run, x, y))
        with torch.no_grad():
            torch._foreach_sub_(params, moves)
        run.step_optimizer()
        return loss


@hookimpl
def automl_register_tricks():
    return [SAM]
