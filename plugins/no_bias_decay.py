"""No weight decay on biases and BatchNorm parameters: decay only the conv and linear weights.

He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural Networks"
(section 3.1, after Jia et al. 2018, "Highly Scalable Deep Learning Training System with
Mixed-Precision: Training ImageNet in Four Minutes").
"""

from __future__ import annotations

from typing import Any

from torch import nn

from automl import Trick, hookimpl


def decay_options(name: str, param: nn.Parameter) -> dict[str, Any]:
    """The param-group options of one parameter: ``weight_decay = 0`` unless it is a weight matrix or kernel.

    The number of dimensions is the test, not the name or the module type: conv kernels are
    4-D and linear weights 2-D, while biases and the gamma and beta of every normalisation
    layer (BatchNorm, GroupNorm, LayerNorm) are 1-D, and a learnt scalar is 0-D. A name test
    (``"bias" in name``) would still decay BatchNorm's gamma, which is called ``weight``, and a
    type test would miss the layers of a model it does not know.
    """
    return {"weight_decay": 0.0} if param.ndim <= 1 else {}


class NoBiasDecay(Trick):
    name = "no_bias_decay"

    def setup(self, run) -> None:
        # Options, not new groups by hand: another trick's regrouping (per-layer lr_scale, say)
        # splits these groups further and keeps their weight_decay.
        run.regroup(decay_options)


@hookimpl
def automl_register_tricks():
    return [NoBiasDecay]
