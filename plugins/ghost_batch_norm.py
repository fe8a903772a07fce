"""Ghost batch normalisation: in training, BatchNorm normalises small "ghost" batches of the batch apart.

Hoffer, Hubara & Soudry 2017, "Train longer, generalize better: closing the generalization gap in large
batch training of neural networks" (algorithm 1); in Page 2018, "How to train your ResNet" (ghost batches
of 32 in batches of 512). A batch of N is cut into G = N // size ghost batches (fewer where N is not a
multiple, so that they are equal and hold at least ``size`` each); each is normalised with its own mean
and variance. As in Page's code, ghost batch g holds the samples ``g, g + G, g + 2G, ...`` (the batch is
shuffled, so any fixed split is as random), which lets one ``batch_norm`` call over G times the channels
do all of them. The running statistics move once per batch, towards the mean over ghost batches of their
statistics; evaluation uses them as usual.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from automl import Trick, hookimpl
from automl.checks import integer


@lru_cache(maxsize=256)
def ghost_batches(n: int, size: int) -> int:
    """The number G of equal ghost batches of at least ``size`` samples in a batch of ``n`` (1: the whole batch)."""
    for groups in range(n // size, 1, -1):
        if n % groups == 0:
            return groups
    return 1


def _momentum(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """The running statistics' update factor for this batch, as ``nn.BatchNorm`` computes it."""
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


def ghost_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, size: int) -> torch.Tensor:
    """``bn`` applied to ``x`` with each ghost batch normalised by its own statistics (see the module)."""
    groups = ghost_batches(x.shape[0], size)
    if not bn.training or groups == 1:
        return bn.plain_forward(x)
    n, c = x.shape[:2]
    tracked = bn.track_running_stats and bn.running_mean is not None
    mean = bn.running_mean.repeat(groups) if tracked else None
    var = bn.running_var.repeat(groups) if tracked else None
    weight = bn.weight.repeat(groups) if bn.weight is not None else None
    bias = bn.bias.repeat(groups) if bn.bias is not None else None
    # (N, C, ...) viewed as (N / G, G * C, ...): channel g * C + k of row a is channel k of sample a * G + g.
    out = F.batch_norm(x.reshape(n // groups, groups * c, *x.shape[2:]), mean, var, weight, bias, True,
                       _momentum(bn) if tracked else 0.0, bn.eps)
    if tracked:
        with torch.no_grad():
            bn.running_mean.copy_(mean.view(groups, c).mean(0))
            bn.running_var.copy_(var.view(groups, c).mean(0))
    out = out.reshape(x.shape)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)  # as the next convolution expects it
    return out


class _Ghost:
    """Mixed into a BatchNorm class: ``forward`` normalises ghost batches of ``self.ghost_size``."""

    ghost_size: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ghost_batch_norm(self, x, self.ghost_size)

    def plain_forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


class GhostBatchNorm1d(_Ghost, nn.BatchNorm1d):
    pass


class GhostBatchNorm2d(_Ghost, nn.BatchNorm2d):
    pass


class GhostBatchNorm3d(_Ghost, nn.BatchNorm3d):
    pass


GHOST_OF = {nn.BatchNorm1d: GhostBatchNorm1d, nn.BatchNorm2d: GhostBatchNorm2d, nn.BatchNorm3d: GhostBatchNorm3d}


def use_ghost_batches(model: nn.Module, size: int) -> int:
    """Make every plain BatchNorm of ``model`` normalise ghost batches of ``size``; returns how many.

    The modules change class in place, so their parameters (which the optimizer holds), buffers,
    ``state_dict`` keys and every reference to them stay as they were; subclasses of BatchNorm are
    left alone, since their own forward may do more.
    """
    changed = 0
    for module in model.modules():
        ghost = GHOST_OF.get(type(module))
        if ghost is not None:
            module.__class__ = ghost
            changed += 1
        if isinstance(module, _Ghost):
            module.ghost_size = size
    return changed


class GhostBatchNorm(Trick):
    name = "ghost_batch_norm"

    @classmethod
    def search_space(cls, trial):
        # Hoffer et al. use 128, Page 32; below 8 the batch statistics are mostly noise.
        return {"size": trial.suggest_int("size", 8, 128, log=True)}

    def __init__(self, size: int = 32) -> None:
        """``size``: the samples of one ghost batch, at least 2 (a variance needs two)."""
        integer(self.name, "size", size, at_least=2)
        self.size = size

    def setup(self, run) -> None:
        # Recorded so that a study can tell "on but inert" (a model without BatchNorm) apart.
        run.attrs["ghost_batch_norm.layers"] = use_ghost_batches(run.model, self.size)


@hookimpl
def automl_register_tricks():
    return [GhostBatchNorm]
