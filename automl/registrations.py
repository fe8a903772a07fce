"""What the host found in the plugins: each trick, model and data set with the plugin it came from, and the
plugins it dropped."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from automl.overrides import to_json
from automl.trick import HOOKS, Trick
from automl.trick_space import SpaceRecorder, option_names


@dataclass(frozen=True)
class TrickInfo:
    """A trick class and where it came from."""

    cls: type[Trick]
    plugin: str
    source: str

    @property
    def name(self) -> str:
        return self.cls.name

    def describe(self) -> dict[str, Any]:
        """The trick as plain data (``automl plugins list|show``): its parameters and their spaces, the options a
        study file may set, the resources it owns (and declares), its ``order``, the hooks the trainer will call,
        where it came from."""
        recorder = SpaceRecorder(self.name)
        returned = self.cls.search_space(recorder)
        signature = inspect.signature(self.cls.__init__).parameters
        options = {name: signature[name].default for name in option_names(self.cls, returned)}
        doc = (self.cls.__doc__ or sys.modules[self.cls.__module__].__doc__ or "").strip().splitlines()
        return {"name": self.name, "owns": list(self.cls.owns), "declares": list(self.cls.declares),
                "order": self.cls.order,
                # A misspelt hook is not among them, and is never called.
                "hooks": [hook for hook in HOOKS if getattr(self.cls, hook) is not getattr(Trick, hook)],
                "plugin": self.plugin, "source": self.source,
                "params": {name: to_json(dist) for name, dist in recorder.params.items()},
                "options": {name: None if value is inspect.Parameter.empty else value
                            for name, value in options.items()},
                "doc": doc[0] if doc else ""}


@dataclass(frozen=True)
class Registered:
    """A callable a plugin registered under a name (a model's builder, a data set's source) and where it came
    from."""

    name: str
    function: Callable[..., Any]
    plugin: str
    source: str
    common: ClassVar[frozenset[str]] = frozenset()
    """The keyword arguments every callable of its kind takes; the rest are its own options."""

    def describe(self) -> dict[str, Any]:
        """As plain data (``automl plugins list``): its own options and where it came from."""
        options = {p.name: None if p.default is inspect.Parameter.empty else p.default
                   for p in inspect.signature(self.function).parameters.values()
                   if p.kind is p.KEYWORD_ONLY and p.name not in self.common}
        doc = (inspect.getdoc(self.function) or "").strip().splitlines()
        return {"name": self.name, "plugin": self.plugin, "source": self.source, "options": options,
                "doc": doc[0] if doc else ""}


MODEL_COMMON_ARGS = frozenset({"in_channels", "num_classes"})
"""The arguments every model's builder takes by keyword; the rest of its parameters are its own options."""

DATASET_COMMON_ARGS = frozenset({"root", "val_fraction", "seed", "device", "download", "verify", "loader"})
"""The arguments every data set's source takes by keyword; the rest of its parameters are its own options."""


class ModelInfo(Registered):
    """A model's builder (``builder(in_channels=..., num_classes=..., **model_args)``) and where it came from."""

    common = MODEL_COMMON_ARGS

    @property
    def builder(self) -> Callable[..., Any]:
        return self.function


class DatasetInfo(Registered):
    """A data set's source (the callable that loads it) and where it came from."""

    common = DATASET_COMMON_ARGS

    @property
    def load(self) -> Callable[..., Any]:
        return self.function


IMPORT_PATH = "package.module:callable"
"""The key of the family that takes every other ``PREFIX:NAME`` as a module to import and a callable in it."""


class FamilyInfo(Registered):
    """A family of sources written ``PREFIX:NAME`` (``torchvision:resnet18``), its resolver, and where it came
    from. A model family's resolver is called as ``resolve(spec, folders=...)`` and returns a
    :class:`automl.train.models.ModelSource`; a data-set family's returns ``(source, where it comes from)``."""

    @property
    def form(self) -> str:
        """How the family is written, as messages show it."""
        return self.name if self.name == IMPORT_PATH else f"{self.name}:NAME"

    @property
    def resolve(self) -> Callable[..., Any]:
        return self.function

    def describe(self) -> dict[str, Any]:
        return {"form": self.form, "plugin": self.plugin, "source": self.source}


def family_forms(families: dict[str, FamilyInfo]) -> str:
    """The forms of ``families`` for messages (``torchvision:NAME, timm:NAME or package.module:callable``), in the
    order they were registered, the import path last: every message that lists what a study may name is made
    here."""
    forms = [f.form for f in sorted(families.values(), key=lambda f: f.name == IMPORT_PATH)]  # else as registered
    return " or ".join([", ".join(forms[:-1]), forms[-1]]) if len(forms) > 1 else "".join(forms)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was dropped, and why (with the traceback, for ``--traceback``)."""

    plugin: str
    source: str
    reason: str
    traceback: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.source}) was skipped: {self.reason}"
