"""The plugin host: discover trick plugins, validate them, and keep the ones that work."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping

import pluggy

from automl import hookspecs
from automl.errors import UserError, unknown
from automl.space import OWNER_PREFIX, SpaceRecorder, build_trick, option_names, to_json
from automl.trick import HOOKS, Trick

GROUP = "automl"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {OWNER_PREFIX, "train"}


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
        study file may set, the resources it owns, the hooks the trainer will call, where it came from."""
        recorder = SpaceRecorder(self.name)
        returned = self.cls.search_space(recorder)
        signature = inspect.signature(self.cls.__init__).parameters
        options = {name: signature[name].default for name in option_names(self.cls, returned)}
        doc = (self.cls.__doc__ or sys.modules[self.cls.__module__].__doc__ or "").strip().splitlines()
        return {"name": self.name, "owns": list(self.cls.owns),
                # A misspelt hook is not among them, and is never called.
                "hooks": [hook for hook in HOOKS if getattr(self.cls, hook) is not getattr(Trick, hook)],
                "plugin": self.plugin, "source": self.source,
                "params": {name: to_json(dist) for name, dist in recorder.params.items()},
                "options": {name: None if value is inspect.Parameter.empty else value
                            for name, value in options.items()},
                "doc": doc[0] if doc else ""}


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was dropped, and why."""

    plugin: str
    source: str
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.source}) was skipped: {self.reason}"


@dataclass
class Host:
    """The plugin manager with what it found: working tricks and failed plugins."""

    pm: pluggy.PluginManager
    tricks: dict[str, TrickInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def trick(self, name: str) -> TrickInfo:
        """The trick called ``name``; an unknown name raises with the valid ones."""
        if name not in self.tricks:
            raise UserError(unknown("trick", name, self.tricks)
                            + self._failed_hint())
        return self.tricks[name]

    def _failed_hint(self) -> str:
        if not self.failures:
            return ""
        return " (skipped plugins: " + ", ".join(f.plugin for f in self.failures) + "; see `automl plugins list`)"


def get_host(plugin_paths: Iterable[str | os.PathLike] = (), environ: Mapping[str, str] | None = None) -> Host:
    """Make the plugin manager, load entry points and plugin files, and validate every trick.

    Plugin files come from ``plugin_paths`` and ``AUTOML_PLUGINS`` (colon-separated);
    ``AUTOML_DISABLE_PLUGINS`` (comma- or colon-separated) blocks plugins by name.
    """
    environ = os.environ if environ is None else environ
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    host = Host(pm)
    blocked = set(filter(None, re.split(r"[,:]", environ.get("AUTOML_DISABLE_PLUGINS", ""))))

    for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        if ep.name in blocked:
            continue
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "entry point"
        _register(host, ep.name, f"{dist}: {ep.value}", ep.load)

    paths = [*plugin_paths, *filter(None, environ.get("AUTOML_PLUGINS", "").split(os.pathsep))]
    for path in paths:
        name = Path(path).stem
        if name in blocked:
            continue
        _register(host, name, str(path), lambda path=path: _import_file(Path(path)))
    return host


def _register(host: Host, name: str, source: str, load) -> None:
    """Load one plugin and collect its tricks; any failure drops this plugin alone."""
    try:
        module = load()
    except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down, nor end automl
        host.failures.append(PluginFailure(name, source, f"failed to import: {type(exc).__name__}: {exc}"))
        return
    if host.pm.get_plugin(name) is not None:
        host.failures.append(PluginFailure(name, source, f"a plugin named {name!r} is already registered"))
        return
    try:
        host.pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        host.failures.append(PluginFailure(name, source, f"invalid hook: {exc}"))
        return
    unknown = [c.name for c in host.pm.get_hookcallers(module) or [] if not c.has_spec()]
    if unknown:
        host.pm.unregister(module)
        host.failures.append(PluginFailure(name, source, f"unknown hook {', '.join(unknown)}; "
                                           f"valid: {', '.join(_hook_names())}"))
        return
    try:
        found = _tricks_of(module)
    except Exception as exc:
        host.pm.unregister(module)
        host.failures.append(PluginFailure(name, source, f"{type(exc).__name__}: {exc}"))
        return
    for cls in found:
        if cls.name in host.tricks:
            other = host.tricks[cls.name]
            raise UserError(f"trick {cls.name!r} is provided twice: by {other.source} and by {source}; "
                            f"disable one with AUTOML_DISABLE_PLUGINS={name}")
    for cls in found:
        host.tricks[cls.name] = TrickInfo(cls, name, source)


def _tricks_of(module: ModuleType) -> list[type[Trick]]:
    impl = getattr(module, "automl_register_tricks", None)
    if impl is None:
        return []
    found = list(impl() or [])
    for cls in found:
        validate_trick(cls)
    return found


def validate_trick(cls: object) -> None:
    """Raise ValueError naming what is wrong with a trick class, from its name to its search space."""
    if not (isinstance(cls, type) and issubclass(cls, Trick)):
        raise ValueError(f"automl_register_tricks returned {cls!r}, not a subclass of automl.Trick")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name) or name in _RESERVED:
        raise ValueError(f"{cls.__name__}.name = {name!r} must match [a-z][a-z0-9_]* and not be one of {sorted(_RESERVED)}")
    if not isinstance(cls.owns, tuple) or not all(isinstance(r, str) for r in cls.owns):
        raise ValueError(f"{cls.__name__}.owns = {cls.owns!r} must be a tuple of resource names")
    try:
        build_trick(cls, SpaceRecorder(name))
    except Exception as exc:
        raise ValueError(f"{cls.__name__} cannot be built from its own search space: {type(exc).__name__}: {exc}") from exc


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(f"no such file {str(path)!r}")
    module_name = f"automl_local_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("automl_"))
