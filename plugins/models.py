"""The built-in models: a small CNN, Page's ResNet-9 and the CIFAR ResNets of He et al., registered as a plugin.

Conventions the tricks rely on:

* Every residual block is a :class:`ResidualBlock`, whose ``last_bn`` is the
  BatchNorm at the end of its residual branch, the one whose output is added to
  the shortcut. Zero-init-gamma sets ``last_bn.weight`` to 0 so that the block
  starts as the identity (or as its shortcut, where the shape changes).
  ``last_bn`` is None where a ReLU follows that BatchNorm on the branch (Page's
  ResNet-9): there a zero gamma would leave the branch dead for good.
* A model is an ``nn.Sequential`` whose top-level children run in forward order,
  one block per child (stages are not nested), with the classifier, an
  ``nn.Linear``, as the last child. A trick that freezes layers front to back
  (FreezeOut) walks ``model.children()`` in order.
* Nothing depends on the memory layout or on the dtype: the models run under
  ``channels_last`` and ``torch.autocast``.

Channel counts are scaled by ``width`` and rounded, with at least one channel.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from automl import hookimpl
from automl.checks import number

__all__ = ["MODELS", "ResidualBlock", "ScaledLinear"]


def _channels(c: int, width: float) -> int:
    number("model", "width", width, low=0, low_open=True)
    return max(1, round(c * width))


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers beside a shortcut.

    ``relu_on_branch=False`` (He et al.): ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.
    ``relu_on_branch=True`` (Page's ResNet-9): ``x + relu(bn2(conv2(relu(bn1(conv1(x))))))``.

    Where the block changes the shape (``stride > 1`` or new channel count) the
    shortcut is a 1x1 conv + BN projection, He et al.'s option B: unlike the
    zero-padded identity of option A it works for any width multiplier and any
    memory layout, at the cost of a few thousand parameters.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, *, relu_on_branch: bool = False
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.relu_on_branch = relu_on_branch
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    @property
    def last_bn(self) -> nn.BatchNorm2d | None:
        # A property, not a second attribute: registering bn2 twice would put it
        # twice in the state_dict. None where a ReLU follows it on the branch: at
        # gamma = beta = 0 that ReLU's input is exactly 0, where its gradient is 0,
        # so a zeroed gamma would never train again.
        return None if self.relu_on_branch else self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.relu_on_branch:
            return self.shortcut(x) + self.relu(out)
        return self.relu(out + self.shortcut(x))


class ScaledLinear(nn.Linear):
    """A linear classifier whose output is multiplied by a constant.

    ResNet-9 scales its logits by 0.125; folding that into the classifier keeps
    the classifier the last child of the model.
    """

    def __init__(self, in_features: int, out_features: int, scale: float, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * self.scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


def small_cnn(*, in_channels: int, num_classes: int, width: float = 1.0) -> nn.Sequential:
    """Three conv-BN-ReLU layers and a linear head, sized for 8x8 digits; pools adaptively for larger inputs."""
    c1, c2, c3 = (_channels(c, width) for c in (32, 64, 128))
    return nn.Sequential(
        _conv_bn_relu(in_channels, c1),
        nn.Sequential(*_conv_bn_relu(c1, c2), nn.MaxPool2d(2)),
        _conv_bn_relu(c2, c3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c3, num_classes),
    )


def resnet9(*, in_channels: int, num_classes: int, width: float = 1.0) -> nn.Sequential:
    """ResNet-9 of David Page, "How to train your ResNet" (2018), the DAWNBench CIFAR-10 winner.

    Three max-pools halve the input three times, so it needs at least 8x8 images;
    the final pool is adaptive, so 8x8 and 32x32 both work.
    """
    c0, c1, c2, c3 = (_channels(c, width) for c in (64, 128, 256, 512))
    return nn.Sequential(
        _conv_bn_relu(in_channels, c0),
        nn.Sequential(*_conv_bn_relu(c0, c1), nn.MaxPool2d(2)),
        ResidualBlock(c1, c1, relu_on_branch=True),
        nn.Sequential(*_conv_bn_relu(c1, c2), nn.MaxPool2d(2)),
        nn.Sequential(*_conv_bn_relu(c2, c3), nn.MaxPool2d(2)),
        ResidualBlock(c3, c3, relu_on_branch=True),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        ScaledLinear(c3, num_classes, scale=0.125, bias=False),
    )


def _cifar_resnet(blocks_per_stage: int, *, in_channels: int, num_classes: int, width: float) -> nn.Sequential:
    """He et al. 2016, section 4.2: depth 6n+2, three stages of n basic blocks at 16, 32, 64 channels."""
    widths = [_channels(c, width) for c in (16, 32, 64)]
    layers: list[nn.Module] = [_conv_bn_relu(in_channels, widths[0])]
    c_in = widths[0]
    for stage, c_out in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(ResidualBlock(c_in, c_out, stride))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            # The initialisation of the paper (He et al. 2015), not PyTorch's default.
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def _resnet_family(depth: int) -> Callable[..., nn.Sequential]:
    n = (depth - 2) // 6

    def build(*, in_channels: int, num_classes: int, width: float = 1.0) -> nn.Sequential:
        return _cifar_resnet(n, in_channels=in_channels, num_classes=num_classes, width=width)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} of He et al. 2016: {n} basic blocks per stage."
    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": small_cnn,
    "resnet9": resnet9,
    **{f"resnet{depth}": _resnet_family(depth) for depth in (20, 32, 56, 110)},
}
"""The models this plugin registers, by name (``[task] model = "resnet20"``)."""


@hookimpl
def automl_register_models():
    return dict(MODELS)
