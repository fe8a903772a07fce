"""The registry of data sets by name, the defaults every data set shares, and ``load_dataset``."""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any, Callable

import torch

from automl.devices import resolve_device
from automl.errors import UserError, unknown
from automl.train.sources import data_root, load_cifar, load_digits, load_synthetic
from automl.train.splits import Dataset, Split

__all__ = [
    "DATASETS",
    "DEFAULT_DOWNLOAD",
    "DEFAULT_VAL_FRACTION",
    "DEFAULT_VERIFY",
    "Dataset",
    "Split",
    "check_dataset_name",
    "load_dataset",
]

DEFAULT_VAL_FRACTION = 0.1
"""The fraction of the training data, chosen by the seed, that becomes val."""
DEFAULT_DOWNLOAD = True
DEFAULT_VERIFY = True
"""Check the data set files' checksums (torchvision's own check)."""

# Arguments every source takes; anything else a source accepts is a data-set option.
_COMMON_ARGS = frozenset({"root", "val_fraction", "seed", "device", "download", "verify"})

DATASETS: dict[str, Callable[..., Dataset]] = {
    "cifar10": functools.partial(load_cifar, "cifar10"),
    "cifar100": functools.partial(load_cifar, "cifar100"),
    "digits": load_digits,
    "synthetic": load_synthetic,
}
"""Each data set's source, by name: a callable taking the common arguments by keyword, and its options."""


def check_dataset_name(name: str) -> str:
    """``name`` if a data set of that name is registered; else a ValueError listing the valid names."""
    if name not in DATASETS:
        raise ValueError(unknown("dataset", name, DATASETS))
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
    **options: Any,
) -> Dataset:
    """Load data set ``name`` to ``device``, split and normalised.

    ``root`` defaults to ``$AUTOML_DATA``, else ``~/.cache/automl/data``.
    ``val_fraction`` of the training data, chosen by ``seed``, becomes val.
    ``verify=False`` accepts CIFAR files whose md5 differs from the official one.
    ``options`` are specific to a data set (``synthetic``: ``num_classes``,
    ``shape``, ``n_train``, ``n_val``, ``n_test``, ``noise``, ``data_seed``).
    """
    try:
        source = DATASETS[check_dataset_name(name)]
    except ValueError as exc:
        raise UserError(str(exc)) from None
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
        **options,
    )


def _check_options(name: str, source: Callable[..., Dataset], options: dict[str, Any]) -> None:
    valid = sorted(p for p in inspect.signature(source).parameters if p not in _COMMON_ARGS)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(
            f"unknown option {unknown[0]!r} for dataset {name!r}; valid: {', '.join(valid) or 'none'}"
        )
