"""Which exceptions during a trial are that trial's own failure (its model's), to be recorded with an end reason
while the study goes on, rather than automl's, which stop the command."""

from __future__ import annotations

import os
import traceback
from typing import Collection

import torch

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def raised_in_model(exc: BaseException, modules: Collection[str] | None = None) -> bool:
    """Whether ``exc`` was raised in a model's own code: a method, outside torch, of an ``nn.Module`` whose class
    is defined in one of ``modules`` (the Python modules of the task's model and its layers; None: any)."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if (isinstance(owner, torch.nn.Module) and not frame.f_code.co_filename.startswith(_TORCH_DIR)
                and (modules is None or type(owner).__module__ in modules)):
            return True
    return False


def model_modules(model: torch.nn.Module) -> frozenset[str]:
    """The Python modules that define ``model``'s classes and its layers', torch's own left out: where an
    exception is the model's (a trick's wrapper around the model is not among them)."""
    return frozenset(type(m).__module__ for m in model.modules() if not type(m).__module__.startswith("torch."))


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, at most ``limit`` characters: enough to say what happened."""
    return (str(exc).strip().splitlines() or [""])[0][:limit]


__all__ = ["first_line", "model_modules", "raised_in_model"]
