"""Zero-init of the last BatchNorm's gamma in every residual block, so each block starts as its shortcut.

Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour";
He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks".
With ``gamma = 0`` the residual branch outputs ``beta`` (0 at init), so the network starts
shallower and easier to train; the gammas are ordinary parameters and are trained from there.
"""

from __future__ import annotations

import torch
from torch import nn

from automl import Trick, hookimpl


def zero_last_gammas(model: nn.Module) -> int:
    """Set ``last_bn.weight`` to 0 in every module that has a ``last_bn`` (see ``ResidualBlock``); returns how many.

    A ``last_bn`` without an affine weight has no gamma to zero and is skipped.
    """
    zeroed = 0
    with torch.no_grad():
        for module in model.modules():
            bn = getattr(module, "last_bn", None)
            if bn is not None and getattr(bn, "weight", None) is not None:
                bn.weight.zero_()
                zeroed += 1
    return zeroed


class ZeroGamma(Trick):
    name = "zero_gamma"

    def setup(self, run) -> None:
        # Recorded so that a study can tell "on but inert" (a model without residual blocks) apart.
        run.attrs["zero_gamma.blocks"] = zero_last_gammas(run.model)


@hookimpl
def automl_register_tricks():
    return [ZeroGamma]
