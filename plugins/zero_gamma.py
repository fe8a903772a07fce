"""Zero-init of the last BatchNorm's gamma in every residual block, so each block starts as its shortcut.

Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour";
He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks".
With ``gamma = 0`` the residual branch outputs ``beta`` (0 at init), so the network starts
shallower and easier to train; the gammas are ordinary parameters and are trained from there.

The blocks it knows: automl's ``ResidualBlock`` (its ``last_bn``), torchvision's ``BasicBlock``
(``bn2``) and ``Bottleneck`` (``bn3``), as ``zero_init_residual=True`` zeroes them, and every timm
block with a ``zero_init_last`` method, which it calls (what timm's own ``zero_init_last`` does).
A model with none of them gets the trick *unavailable*, with the reason.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from automl import Trick, hookimpl

NO_BLOCK = ("the model has no residual block zero_gamma knows (automl's ResidualBlock with a last_bn, "
            "torchvision's BasicBlock or Bottleneck, a timm block with zero_init_last)")


def _torchvision_last_bn(module: nn.Module) -> nn.Module | None:
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # torchvision is a dependency, but the trick must not need it for automl's models
        return None
    if isinstance(module, Bottleneck):
        return module.bn3
    if isinstance(module, BasicBlock):
        return module.bn2
    return None


def _zeroer(module: nn.Module) -> Callable[[], None] | None:
    """How to zero ``module``'s last gamma, if it is a residual block this trick knows (None otherwise)."""
    bn = getattr(module, "last_bn", None) or _torchvision_last_bn(module)
    if bn is not None:
        if getattr(bn, "weight", None) is None:
            return None  # no affine weight: no gamma to zero
        return bn.weight.zero_
    zero_init_last = getattr(module, "zero_init_last", None)
    if callable(zero_init_last) and not isinstance(zero_init_last, bool):  # timm's blocks
        return zero_init_last
    return None


def zero_last_gammas(model: nn.Module) -> int:
    """Zero the last gamma of every residual block of ``model`` this trick knows; returns how many."""
    zeroers = [z for z in map(_zeroer, model.modules()) if z is not None]
    with torch.no_grad():
        for zero in zeroers:
            zero()
    return len(zeroers)


def residual_blocks(model: nn.Module) -> int:
    """How many of ``model``'s modules are residual blocks whose last gamma this trick can zero."""
    return sum(_zeroer(m) is not None for m in model.modules())


class ZeroGamma(Trick):
    name = "zero_gamma"

    @classmethod
    def unavailable(cls, context, options):
        model = getattr(context, "model", None)
        if model is not None and residual_blocks(model) == 0:
            return NO_BLOCK
        return None

    def setup(self, run) -> None:
        # Recorded so that a study can tell "on but inert" (a model without residual blocks) apart.
        run.attrs["zero_gamma.blocks"] = zero_last_gammas(run.model)


@hookimpl
def automl_register_tricks():
    return [ZeroGamma]
