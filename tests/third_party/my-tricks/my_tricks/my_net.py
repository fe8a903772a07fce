"""A model of this package's own, registered for automl through its model hook."""

from torch import nn

from automl import hookimpl


def my_net(*, in_channels: int, num_classes: int, hidden: int = 8) -> nn.Module:
    """One conv, global pooling and a linear head."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(hidden, num_classes))


@hookimpl
def automl_register_models():
    return {"my_net": my_net}
