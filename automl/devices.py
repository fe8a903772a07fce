"""The one parser of device names for the whole project: the CLI, the study runner and the data loaders."""

from __future__ import annotations

import torch

from automl.errors import UserError

__all__ = ["resolve_device"]

_VALID = "use auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device) -> torch.device:
    """The device ``name`` means: ``auto`` (the first GPU when there is one, else the CPU), ``cpu``,
    ``cuda``, ``cuda:N`` or a ``torch.device``; anything else, or a GPU that is not there, is a UserError."""
    if isinstance(name, torch.device):
        device = name
    elif name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError, TypeError):
            raise UserError(f"unknown device {name!r}; {_VALID}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(name)!r} asked for, but no CUDA GPU is visible; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device {str(name)!r} is not supported; {_VALID}")
    return device
