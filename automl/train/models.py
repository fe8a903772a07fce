"""Where a study's model comes from: a plugin's name, ``torchvision:NAME``, ``timm:NAME`` or ``package.module:callable``.

:func:`resolve_model` turns ``[task] model`` into a :class:`ModelSource` that builds the model for a data
set's channels and classes, and says where it came from (checkpoints record that, so that a foreign model
can be rebuilt). torchvision's builders take no ``in_channels``: a data set with other than 3 channels gets
the first ``Conv2d`` of the model replaced by one of the same shape for its channel count (torchvision's
ResNet ``conv1``, VGG's first conv, ViT's ``conv_proj``). timm adapts its own stem (``in_chans``).
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from automl.errors import UserError
from automl.host import MODEL, installed_host
from automl.imports import NoModule, import_spec
from automl.registrations import IMPORT_PATH

__all__ = ["ModelSource", "build_model", "check_model_name", "check_output", "from_import_path", "from_timm",
           "from_torchvision", "resolve_model"]

TIMM_INSTALL = 'pip install -e ".[timm]"'
"""The command that installs the optional timm extra, named when a study asks for a timm model without it."""
NEAR = 3
"""How many close matches an unknown torchvision or timm name is shown with."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved ``[task] model``: how to build it, and where it came from (plain data, for provenance)."""

    spec: str
    build: Callable[..., nn.Module] = field(repr=False)
    """``build(in_channels=..., num_classes=..., **model_args)``, checked: a UserError on any failure."""
    origin: dict[str, str]
    """``plugin`` and ``source`` (a plugin's, or the package and version a model comes from) and, for an
    import path, the ``file`` of its module."""


def check_model_name(spec: str) -> str:
    """``spec`` if it has the form of a model (a name, or ``prefix:rest``); else a ValueError saying the forms
    (the installed plugins' families: a study file is checked before any ``--plugin`` host is at hand)."""
    name, colon, rest = spec.partition(":")
    if not name.strip() or (colon and not rest.strip()):
        raise ValueError(f"model {spec!r} must be a model's name, {installed_host().forms(MODEL)}")
    return spec


def resolve_model(spec: str, *, folders: Iterable[str | Path] = (), host: Any = None) -> ModelSource:
    """The source of model ``spec``; a name that does not exist, or a module that does not import, is a UserError.

    ``folders``: where ``package.module`` is looked for after ``sys.path`` (the study file's folder).
    ``host``: the plugin host whose models a plain name is looked up in (default: :func:`installed_host`).
    """
    try:
        check_model_name(spec)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    host = host or installed_host()
    family = host.family(MODEL, spec)
    if family is None:
        info = host.model(spec)
        return ModelSource(spec, _checked(spec, info.builder, options=_options(info.builder)),
                           {"plugin": info.plugin, "source": info.source})
    try:
        return family.resolve(spec, folders=[str(f) for f in folders])
    except NoModule as exc:
        if family.name != IMPORT_PATH:
            raise
        raise UserError(f"{exc}; a model is its name, {host.forms(MODEL)}") from None


def build_model(spec: str, *, in_channels: int, num_classes: int, folders: Iterable[str | Path] = (),
                host: Any = None, **model_args: Any) -> nn.Module:
    """Build model ``spec`` for ``in_channels``-channel images and ``num_classes`` classes (seed torch first)."""
    for key, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"model {key} must be a positive integer, got {key}={value!r}")
    source = resolve_model(spec, folders=folders, host=host)
    return source.build(in_channels=in_channels, num_classes=num_classes, **model_args)


def check_output(model: nn.Module, spec: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Refuse a model whose scores for one batch of two images are not (2, ``num_classes``), before any study.

    In eval mode and without gradients, with torch's RNG left as it was, on the model's own device.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    batch = (2, *input_shape)
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            out = model.eval()(torch.randn(*batch, device=device))
    except Exception as exc:
        raise UserError(f"model {spec!r} fails on one batch of shape {batch}: {type(exc).__name__}: "
                        f"{_line(exc)}; it must take the data set's (N, C, H, W) images") from None
    finally:
        model.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, num_classes):
        raise UserError(f"model {spec!r} returns {shape} for one batch of shape {batch}; expected "
                        f"(2, {num_classes}): a score for each of the data set's {num_classes} classes")


def _checked(spec: str, builder: Callable[..., Any], *, options: list[str] | None = None,
             adapt: Callable[[nn.Module, int], nn.Module] | None = None) -> Callable[..., nn.Module]:
    """``builder`` called by keyword, each of its failures a UserError naming ``spec``.

    ``options``: the keywords it takes besides in_channels and num_classes (None: any); ``adapt``: called
    with the model and in_channels, for builders that take no in_channels.
    """

    def build(*, in_channels: int, num_classes: int, **model_args: Any) -> nn.Module:
        unknown = sorted(set(model_args) - set(options)) if options is not None else []
        if unknown:
            raise UserError(f"unknown option {unknown[0]!r} for model {spec!r}; valid: "
                            f"{', '.join(sorted(options)) or '(none)'}")
        kwargs = dict(model_args) if adapt else {"in_channels": in_channels, **model_args}
        shown = ", ".join(f"{k}={v!r}" for k, v in {"num_classes": num_classes, **kwargs}.items())
        try:
            model = builder(num_classes=num_classes, **kwargs)
        except Exception as exc:
            raise UserError(f"model {spec!r} raised {type(exc).__name__} when called as ({shown}): "
                            f"{_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise UserError(f"model {spec!r} returned {type(model).__name__} when called as ({shown}); "
                            "expected a torch.nn.Module")
        try:
            return adapt(model, in_channels) if adapt else model
        except ValueError as exc:
            raise UserError(f"model {spec!r} cannot take {in_channels}-channel images: {exc}") from None

    return build


def _options(builder: Callable[..., Any]) -> list[str] | None:
    """The keyword options of a builder (None where it takes ``**kwargs``: anything goes)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in ("in_channels", "num_classes")]


def from_torchvision(spec: str, *, folders: Iterable[str] = ()) -> ModelSource:
    """``torchvision:NAME``: one of torchvision's classifiers, untrained, its first conv adapted to the channels."""
    import torchvision

    name = spec.partition(":")[2]
    names = torchvision.models.list_models(module=torchvision.models)  # the classifiers, not detection's
    if name not in names:
        raise UserError(_no_such("torchvision", spec, name, names))
    builder = torchvision.models.get_model_builder(name)

    def without_weights(**kwargs: Any) -> nn.Module:
        if "weights" in kwargs:  # nothing is ever downloaded: the study trains from scratch
            raise ValueError("torchvision models train from scratch here; remove weights from model_args")
        return builder(weights=None, **kwargs)

    return ModelSource(spec, _checked(spec, without_weights, adapt=adapt_first_conv),
                       {"plugin": "torchvision", "source": f"torchvision {torchvision.__version__}"})


def from_timm(spec: str, *, folders: Iterable[str] = ()) -> ModelSource:
    """``timm:NAME``: one of timm's models, untrained, for the data set's channels and classes."""
    try:
        import timm
    except ImportError:
        raise UserError(f"model {spec!r} needs timm, which is not installed; install it with "
                        f"{TIMM_INSTALL}") from None
    name = spec.partition(":")[2]
    if not timm.is_model(name):
        raise UserError(_no_such("timm", spec, name, timm.list_models()))

    def create(*, num_classes: int, in_channels: int, **kwargs: Any) -> nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)

    return ModelSource(spec, _checked(spec, create), {"plugin": "timm", "source": f"timm {timm.__version__}"})


def _no_such(library: str, spec: str, name: str, names: list[str]) -> str:
    near = difflib.get_close_matches(name, names, n=NEAR, cutoff=0.6)
    hint = f"; did you mean {', '.join(f'{library}:{n}' for n in near)}?" if near else ""
    return f"model {spec!r}: {library} has no model {name!r}{hint} ({len(names)} models in all)"


def from_import_path(spec: str, *, folders: Iterable[str] = ()) -> ModelSource:
    """``package.module:callable``, the module imported from ``sys.path`` or, failing that, from ``folders``."""
    folders = list(folders)
    module, target = import_spec(spec, folders, "model", "a torch.nn.Module")
    module_name = spec.partition(":")[0]
    file = str(getattr(module, "__file__", "") or "")
    folder = next((f for f in folders if file and Path(file).resolve().is_relative_to(Path(f).resolve())), "")
    origin = {"plugin": module_name, "source": f"{module_name} ({file})", "file": file, "folder": folder}
    return ModelSource(spec, _checked(spec, target), origin)


def adapt_first_conv(model: nn.Module, in_channels: int) -> nn.Module:
    """``model`` with its first ``Conv2d`` taking ``in_channels`` channels (a new, freshly initialised conv of
    the same kernel, stride and width), for images of other than the 3 channels torchvision's models expect."""
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None:
        raise ValueError("the model has no Conv2d whose input could take the data set's channels")
    if conv.in_channels == in_channels:
        return model
    if conv.groups != 1:
        raise ValueError(f"the first Conv2d ({name}) is grouped (groups={conv.groups}); it cannot take "
                         f"{in_channels} channels")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)
    return model


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
