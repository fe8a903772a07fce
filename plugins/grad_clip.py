"""Gradient clipping: rescale the gradients so that their global L2 norm is at most ``max_norm``.

Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks" (section 3.2,
clipping by the norm of the whole gradient, which keeps its direction). It runs in ``after_backward``,
not as an optimizer pre-hook, so another trick's ``run.regroup`` or a replaced optimizer keeps it, and
under a ``GradScaler`` it sees the gradients already unscaled.
"""

from __future__ import annotations

from typing import Iterable

import torch

from automl import Trick, hookimpl


def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients of ``params`` in place so that their global L2 norm is at most ``max_norm``;
    returns the norm before clipping (on the device, not read)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    # A factor of at most 1, applied without a branch, so the device is never synchronised.
    factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, factor.to(grads[0].dtype))
    return norm


class GradClip(Trick):
    name = "grad_clip"

    @classmethod
    def search_space(cls, trial):
        return {"max_norm": trial.suggest_float("max_norm", 0.01, 10.0, log=True)}

    def __init__(self, max_norm: float = 1.0) -> None:
        if not max_norm > 0:
            raise ValueError(f"grad_clip max_norm must be > 0, got {max_norm=}")
        self.max_norm = float(max_norm)

    def after_backward(self, run) -> None:
        clip_grad_norm((p for g in run.optimizer.param_groups for p in g["params"]), self.max_norm)


@hookimpl
def automl_register_tricks():
    return [GradClip]
