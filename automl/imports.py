"""A ``package.module:callable`` of a study file, imported from ``sys.path`` or, failing that, from the study's folders.

Models and data sets name their callables so; both are looked up here, with the same search order and the same
one-line errors: a module that does not import (named, with the folders searched), one that raises as it is
imported (what it raised), a missing attribute (with the close matches), or one that cannot be called.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from automl.errors import UserError

__all__ = ["NoModule", "import_spec"]

CLOSE_MATCHES = 3
"""Names offered when an attribute is not found."""


class NoModule(UserError):
    """The module of a ``package.module:callable`` is nowhere to be found (perhaps a misspelt family prefix)."""


def import_spec(spec: str, folders: Sequence[str | Path], kind: str, returns: str) -> tuple[ModuleType, Any]:
    """The module and the callable ``spec`` names; ``kind`` and ``returns`` ("a torch.nn.Module") word the errors.

    The folders are searched after ``sys.path`` (an installed package wins, as the study file's comment says),
    and stay on it: the module may import its neighbours later, and DataLoader workers import it again."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"{kind} {spec!r} must be package.module:callable")
    module = _module(spec, module_name, [str(f) for f in folders], kind)
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            near = difflib.get_close_matches(part, names, n=CLOSE_MATCHES)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise UserError(f"{kind} {spec!r}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                            f"{attr!r}{hint}")
        target = getattr(target, part)
    if not callable(target):
        raise UserError(f"{kind} {spec!r}: {attr!r} is a {type(target).__name__}, not a callable that returns "
                        f"{returns}")
    return module, target


def _module(spec: str, module_name: str, folders: list[str], kind: str) -> ModuleType:
    for folder in folders:
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            searched = ", ".join(dict.fromkeys(p or "." for p in [*sys.path, *folders] if os.path.isdir(p or ".")))
            raise NoModule(f"{kind} {spec!r}: no module named {exc.name!r}; searched {searched}") from None
        raise UserError(f"{kind} {spec!r}: importing module {module_name!r} failed: {_line(exc)}") from None
    except Exception as exc:
        raise UserError(f"{kind} {spec!r}: importing module {module_name!r} raised {type(exc).__name__}: "
                        f"{_line(exc)}") from None


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
