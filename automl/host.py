"""The plugin host: discover trick, model and data-set plugins, validate them, and keep the ones that work."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping

import pluggy

from automl import hookspecs
from automl.errors import UserError, unknown
from automl.registrations import (IMPORT_PATH, DatasetInfo, FamilyInfo, ModelInfo, PluginFailure, Registered, TrickInfo,
                                  family_forms)
from automl.trick import Trick
from automl.trick_checks import NAME, InvalidTrick, near_hooks, validate_trick

GROUP = "automl"
MODEL, DATASET = "model", "dataset"
"""The two kinds of registered callable that also come in families (``PREFIX:NAME``)."""


@dataclass
class Host:
    """The plugin manager with what it found: working tricks, failed plugins, and trick names that cannot be
    used (two plugins provide them, or their class is invalid), each with the reason."""

    pm: pluggy.PluginManager
    tricks: dict[str, TrickInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    """Trick name to why no study or command may use it; the plugins' other tricks keep working."""
    warnings: list[str] = field(default_factory=list)
    """What loaded but looks wrong (a method named almost like a hook), said once at load."""
    providers: dict[str, list[TrickInfo]] = field(default_factory=dict, repr=False)
    """Every plugin that provides each trick name, the clashing ones included."""
    models: dict[str, ModelInfo] = field(default_factory=dict)
    blocked_models: dict[str, str] = field(default_factory=dict)
    """Model name to why it cannot be used (two plugins provide it)."""
    model_providers: dict[str, list[ModelInfo]] = field(default_factory=dict, repr=False)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    blocked_datasets: dict[str, str] = field(default_factory=dict)
    """Data-set name to why it cannot be used (two plugins provide it)."""
    dataset_providers: dict[str, list[DatasetInfo]] = field(default_factory=dict, repr=False)
    families: dict[str, dict[str, FamilyInfo]] = field(default_factory=lambda: {MODEL: {}, DATASET: {}})
    """For models and for data sets: prefix (``torchvision``, or ``IMPORT_PATH``) to the family that resolves
    ``PREFIX:NAME``."""
    blocked_families: dict[str, dict[str, str]] = field(default_factory=lambda: {MODEL: {}, DATASET: {}})
    family_providers: dict[str, dict[str, list[FamilyInfo]]] = field(default_factory=lambda: {MODEL: {}, DATASET: {}},
                                                                     repr=False)

    def trick(self, name: str) -> TrickInfo:
        """The trick called ``name``; an unknown or blocked name raises with the valid ones or the reason."""
        if name in self.blocked:
            raise UserError(f"trick {name!r} cannot be used: {self.blocked[name]}")
        if name not in self.tricks:
            raise UserError(unknown("trick", name, self.tricks)
                            + self._failed_hint())
        return self.tricks[name]

    def model(self, name: str) -> ModelInfo:
        """The model called ``name``; an unknown or blocked name raises with the valid ones or the reason."""
        return self._registered(MODEL, name, self.models, self.blocked_models, self._others(MODEL))

    def dataset(self, name: str) -> DatasetInfo:
        """The data set called ``name``; an unknown or blocked name raises with the valid ones or the reason."""
        return self._registered(DATASET, name, self.datasets, self.blocked_datasets, self._others(DATASET))

    def family(self, kind: str, spec: str) -> FamilyInfo | None:
        """The family that resolves ``spec`` (``PREFIX:NAME``) for ``kind`` (``"model"`` or ``"dataset"``):
        its prefix's, else the import path's; None for a plain name. A blocked or unknown one raises."""
        prefix, colon, _ = spec.partition(":")
        if not colon:
            return None
        for key in (prefix, IMPORT_PATH):
            if key in self.blocked_families[kind]:
                raise UserError(f"{kind} {spec!r} cannot be used: {self.blocked_families[kind][key]}")
            if key in self.families[kind]:
                return self.families[kind][key]
        raise UserError(f"{kind} {spec!r}: no {kind} family {prefix + ':'!r}; a {kind} is its name"
                        f"{self._others(kind)}{self._failed_hint()}")

    def forms(self, kind: str) -> str:
        """What a ``kind`` may be named, for messages: its name or each family's form."""
        return family_forms(self.families[kind])

    def _others(self, kind: str) -> str:
        return f", {self.forms(kind)}" if self.families[kind] else ""

    def _registered(self, kind: str, name: str, found: dict, blocked: dict[str, str], others: str) -> Any:
        if name in blocked:
            raise UserError(f"{kind} {name!r} cannot be used: {blocked[name]}")
        if name not in found:
            raise UserError(unknown(kind, name, found) + others + self._failed_hint())
        return found[name]

    def _failed_hint(self) -> str:
        if not self.failures:
            return ""
        return " (skipped plugins: " + ", ".join(f.plugin for f in self.failures) + "; see `automl plugins list`)"


def get_host(plugin_paths: Iterable[str | os.PathLike] = (), environ: Mapping[str, str] | None = None) -> Host:
    """Make the plugin manager, load entry points and plugin files, and validate every trick.

    Plugin files (or package folders) come from ``plugin_paths`` and ``AUTOML_PLUGINS`` (colon-separated);
    ``AUTOML_DISABLE_PLUGINS`` (comma- or colon-separated) blocks plugins by name (an entry point's name or
    module, a path's stem). A path that does not
    exist, or that clashes with an installed plugin, is a UserError: it was asked for by name.
    """
    environ = os.environ if environ is None else environ
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    host = Host(pm)
    blocked = set(filter(None, re.split(r"[,:]", environ.get("AUTOML_DISABLE_PLUGINS", ""))))

    for ep in sorted(entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value)):
        if ep.name in blocked or ep.value in blocked:
            continue
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "entry point"
        # Two distributions may use one entry-point name (a third-party `cosine`): the second is known by its
        # module, so that its tricks still load and a trick name they share is blocked as a clash.
        name = ep.name if host.pm.get_plugin(ep.name) is None else ep.value
        _register(host, name, f"{dist}: {ep.value}", ep.load)

    paths = [*plugin_paths, *filter(None, environ.get("AUTOML_PLUGINS", "").split(os.pathsep))]
    for path in map(Path, paths):
        if path.stem in blocked:
            continue
        if not path.exists():
            raise UserError(f"plugin {str(path)!r} does not exist; give a plugin's .py file or package folder")
        _register(host, path.stem, str(path), lambda path=path: _import_path(path), explicit=True)
    return host


_IN_USE: list[Host] = []
"""The command's host, once it has made one: the host a name is looked up in where no host is handed down."""


def use_host(host: Host) -> None:
    """Look model names up in ``host`` from now on in this process (the command's, with its ``--plugin`` paths)."""
    _IN_USE[:] = [host]


def installed_host() -> Host:
    """The host a model's or a data set's name is looked up in: the command's (:func:`use_host`), else the installed plugins'
    (entry points, ``AUTOML_PLUGINS``), made once per process."""
    if _IN_USE:
        return _IN_USE[0]
    keys = ("AUTOML_PLUGINS", "AUTOML_DISABLE_PLUGINS")
    return _host_for(tuple((k, os.environ.get(k, "")) for k in keys))


@functools.lru_cache(maxsize=4)
def _host_for(environ: tuple[tuple[str, str], ...]) -> Host:
    return get_host(environ=dict(environ))


def _register(host: Host, name: str, source: str, load, explicit: bool = False) -> None:
    """Load one plugin and collect its tricks; any failure drops this plugin alone.

    ``explicit``: a path the user gave, for which a clash with an installed plugin is an error.
    """
    try:
        module = load()
    except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down, nor end automl
        _fail(host, name, source, f"failed to import: {type(exc).__name__}: {exc}", exc)
        return
    if host.pm.get_plugin(name) is not None:
        if explicit:
            raise UserError(f"plugin {source!r} is named {name!r}, like an installed plugin "
                            f"({_source_of(host, name)}); rename it (a plugin path is named by its stem)")
        _fail(host, name, source, f"a plugin named {name!r} is already registered")
        return
    try:
        host.pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        _fail(host, name, source, f"invalid hook: {exc}", exc)
        return
    unknown = [c.name for c in host.pm.get_hookcallers(module) or [] if not c.has_spec()]
    if unknown:
        host.pm.unregister(module)
        _fail(host, name, source, f"unknown hook {', '.join(unknown)}; valid: {', '.join(_hook_names())}")
        return
    registered = {}
    for hook, kind, role in (("automl_register_models", "model", "builder"),
                             ("automl_register_datasets", "data-set", "source"),
                             ("automl_register_model_families", "model family", "resolver"),
                             ("automl_register_dataset_families", "data-set family", "resolver")):
        try:
            registered[hook] = _registered(module, hook, kind, role)
        except Exception as exc:
            host.pm.unregister(module)
            _fail(host, name, source, f"{hook}: {type(exc).__name__}: {exc}", exc)
            return
    try:
        found = _tricks_of(module)
    except Exception as exc:
        host.pm.unregister(module)
        _fail(host, name, source, f"{type(exc).__name__}: {exc}", exc)
        if isinstance(exc, InvalidTrick):
            host.blocked.setdefault(exc.trick, f"its plugin {name!r} ({source}) was skipped: {exc}")
        return
    for cls in found:
        _add_trick(host, TrickInfo(cls, name, source), explicit)
    for model, builder in registered["automl_register_models"].items():
        _add_registered(ModelInfo(model, builder, name, source), host.models, host.model_providers,
                        host.blocked_models, "model")
    for dataset, load in registered["automl_register_datasets"].items():
        _add_registered(DatasetInfo(dataset, load, name, source), host.datasets, host.dataset_providers,
                        host.blocked_datasets, "dataset")
    for kind in (MODEL, DATASET):
        for prefix, resolve in registered[f"automl_register_{kind}_families"].items():
            _add_registered(FamilyInfo(prefix, resolve, name, source), host.families[kind],
                            host.family_providers[kind], host.blocked_families[kind], f"{kind} family")


def _source_of(host: Host, plugin: str) -> str:
    return next((i.source for infos in host.providers.values() for i in infos if i.plugin == plugin), "no tricks")


def _fail(host: Host, name: str, source: str, reason: str, exc: BaseException | None = None) -> None:
    trace = "".join(traceback.format_exception(exc)) if exc is not None else ""
    host.failures.append(PluginFailure(name, source, reason, trace))


def _add_trick(host: Host, info: TrickInfo, explicit: bool) -> None:
    """Add a trick; a name two plugins provide is blocked (only that name), or an error for an explicit path."""
    others = host.providers.setdefault(info.name, [])
    if others and explicit:
        raise UserError(f"trick {info.name!r} is provided twice: by {others[0].source} and by {info.source}; "
                        f"rename one, or disable the installed plugin with AUTOML_DISABLE_PLUGINS={others[0].plugin}")
    others.append(info)
    host.warnings.extend(near_hooks(info.cls))
    if len(others) == 1:
        host.tricks[info.name] = info
        return
    host.tricks.pop(info.name, None)
    host.blocked[info.name] = _provided_twice("trick", info.name, [o.source for o in others])


def _provided_twice(kind: str, name: str, sources: list[str]) -> str:
    """Why a name several plugins provide is blocked: every source, and how to disable all but one."""
    # The module of an entry point names it alone, even where two distributions use one entry-point name.
    keys = [source.rpartition(": ")[2] for source in sources]
    return (f"{kind} {name!r} is provided twice: by {' and by '.join(sources)}; "
            f"disable one with AUTOML_DISABLE_PLUGINS={' or '.join(keys)}")


def _add_registered(info: Registered, found: dict, providers: dict, blocked: dict[str, str], kind: str) -> None:
    """Add a model or a data set to ``found``; a name two plugins provide is blocked, naming both."""
    others = providers.setdefault(info.name, [])
    others.append(info)
    if len(others) == 1:
        found[info.name] = info
        return
    found.pop(info.name, None)
    blocked[info.name] = _provided_twice(kind, info.name, [o.source for o in others])


def _registered(module: ModuleType, hook: str, kind: str, role: str) -> dict[str, Callable[..., Any]]:
    """What a plugin's ``automl_register_models`` or ``automl_register_datasets`` returns, checked: a dict of
    names of the tricks' form to callables (``role``: what the callable is to the ``kind``, in messages)."""
    impl = getattr(module, hook, None)
    if impl is None:
        return {}
    found = impl() or {}
    if not isinstance(found, Mapping):
        raise ValueError(f"returned {type(found).__name__}, not a dict of {kind} name to {role}")
    family = kind.endswith("family")
    for name, function in found.items():
        if not isinstance(name, str) or not (NAME.match(name) or family and name == IMPORT_PATH):
            also = f" (a prefix), or {IMPORT_PATH!r}" if family else ""
            raise ValueError(f"{kind} name {name!r} must match [a-z][a-z0-9_]*{also}")
        if not callable(function):
            raise ValueError(f"the {role} of {kind.replace('-', ' ')} {name!r} is {function!r}, not a callable")
    return dict(found)


def _tricks_of(module: ModuleType) -> list[type[Trick]]:
    impl = getattr(module, "automl_register_tricks", None)
    if impl is None:
        return []
    found = list(impl() or [])
    for cls in found:
        validate_trick(cls)
    return found


def _import_path(path: Path) -> ModuleType:
    """Import a plugin file, or a package folder (its ``__init__.py``, with its submodules importable)."""
    module_name = f"automl_local_plugins.{path.stem}"
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise FileNotFoundError(f"{str(path)!r} is a folder without __init__.py, not a package")
        spec = importlib.util.spec_from_file_location(module_name, init, submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:
        raise ImportError(f"{str(path)!r} is not a Python file (.py) or a package folder")
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
