"""How a data set's name finds its source (a plugin's, torchvision's, an import path), the defaults every data set
shares, and ``load_dataset``."""

from __future__ import annotations

import functools
import inspect
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from automl.devices import resolve_device
from automl.errors import UserError
from automl.host import DATASET, installed_host
from automl.imports import NoModule, import_spec
from automl.registrations import DATASET_COMMON_ARGS, IMPORT_PATH
from automl.train.dataset_sources import load_callable, load_torchvision
from automl.train.sources import data_root
from automl.train.splits import Dataset, Split

__all__ = [
    "DEFAULT_DOWNLOAD",
    "DEFAULT_LOADER",
    "DEFAULT_VAL_FRACTION",
    "DEFAULT_VERIFY",
    "Dataset",
    "Split",
    "check_dataset_name",
    "dataset_source",
    "load_dataset",
]

DEFAULT_VAL_FRACTION = 0.1
"""The fraction of the training data, chosen by the seed, that becomes val."""
DEFAULT_DOWNLOAD = True
DEFAULT_VERIFY = True
"""Check the data set files' checksums (torchvision's own check)."""
DEFAULT_LOADER = "auto"
"""In memory or streamed, by size (see ``automl.train.torch_data.MEMORY_LOADER_MAX_BYTES``)."""

_DATASET_NAME = re.compile(r"^([a-z][a-z0-9_]*|[A-Za-z_][\w.]*:\w+)$")

def dataset_source(name: str, *, host: Any = None, folders: Sequence[Path] = ()) -> tuple[Callable[..., Dataset], str]:
    """The source that loads data set ``name`` and where it comes from (a plugin and its version, torchvision's
    version, or the import path): a registered name, or ``PREFIX:NAME`` of a family (``torchvision:NAME``,
    ``package.module:callable``)."""
    if host is None:
        from automl.host import get_host

        host = get_host()
    family = host.family(DATASET, name)
    if family is None:
        info = host.dataset(name)
        return info.load, info.source
    try:
        return family.resolve(name, folders=folders)
    except NoModule as exc:
        if family.name != IMPORT_PATH:
            raise
        raise UserError(f"{exc}; a data set is its name, {host.forms(DATASET)}") from None


def from_torchvision(name: str, *, folders: Sequence[Path] = ()) -> tuple[Callable[..., Dataset], str]:
    """``torchvision:NAME``: a class of ``torchvision.datasets``, downloaded into the data root."""
    import torchvision

    return functools.partial(load_torchvision, name.partition(":")[2]), f"torchvision {torchvision.__version__}"


def from_import_path(name: str, *, folders: Sequence[Path] = ()) -> tuple[Callable[..., Dataset], str]:
    """``package.module:callable`` returning (train, test) torch Datasets; its module is imported here, so that
    one that is not found is said before anything loads."""
    import_spec(name, folders, "dataset", "(train, test)")
    return functools.partial(load_callable, name, folders=folders), f"import {name}"


def check_dataset_name(name: str) -> str:
    """``name`` if it has the form of a data set's name (a plugin's, or ``PREFIX:NAME``); else a ValueError saying
    the forms (the installed plugins' families). Whether it exists is checked on loading."""
    if not isinstance(name, str) or not _DATASET_NAME.match(name):
        raise ValueError(f"dataset {name!r} must be a data set's name (digits, imagefolder, ...; see `automl "
                         f"plugins list`), {installed_host().forms(DATASET)}")
    return name


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    device: str | torch.device = "cpu",
    download: bool = DEFAULT_DOWNLOAD,
    verify: bool = DEFAULT_VERIFY,
    loader: str = DEFAULT_LOADER,
    host: Any = None,
    folders: Sequence[str | os.PathLike[str]] = (),
    **options: Any,
) -> Dataset:
    """Load data set ``name`` to ``device``, split and normalised.

    ``root`` defaults to ``$AUTOML_DATA``, else ``~/.cache/automl/data``.
    ``val_fraction`` of the training data, chosen by ``seed``, becomes val.
    ``verify=False`` accepts CIFAR files whose md5 differs from the official one.
    ``loader``: ``memory``, ``stream`` or ``auto`` (by size). ``host`` (default: the installed plugins) provides
    the registered names; a ``package.module:callable`` is imported from ``sys.path`` or ``folders``.
    ``options`` are specific to a data set (``synthetic``: ``num_classes``,
    ``shape``, ``n_train``, ``n_val``, ``n_test``, ``noise``, ``data_seed``).
    """
    try:
        check_dataset_name(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    source, _ = dataset_source(name, host=host, folders=[Path(f) for f in folders])
    _check_options(name, source, options)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must lie strictly between 0 and 1, got val_fraction={val_fraction!r}")
    return source(
        root=data_root(root),
        val_fraction=float(val_fraction),
        seed=seed,
        device=resolve_device(device),
        download=download,
        verify=verify,
        loader=loader,
        **options,
    )


def _check_options(name: str, source: Callable[..., Dataset], options: dict[str, Any]) -> None:
    params = inspect.signature(source).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # a callable's own arguments: it says itself what it refuses
    valid = sorted(p for p, v in params.items() if p not in DATASET_COMMON_ARGS and v.kind is v.KEYWORD_ONLY)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(
            f"unknown option {unknown[0]!r} for dataset {name!r}; valid: {', '.join(valid) or 'none'}"
        )
