"""automl's built-in data sets: scikit-learn's digits, a synthetic toy task, CIFAR-10/100 and any image folder."""

from __future__ import annotations

import functools

from automl import hookimpl
from automl.train.dataset_sources import load_imagefolder
from automl.train.sources import load_cifar, load_digits, load_synthetic


def _cifar(name: str):
    source = functools.partial(load_cifar, name)
    source.__doc__ = load_cifar.__doc__  # for `automl plugins list`
    return source


@hookimpl
def automl_register_datasets():
    return {"digits": load_digits, "synthetic": load_synthetic, "cifar10": _cifar("cifar10"),
            "cifar100": _cifar("cifar100"), "imagefolder": load_imagefolder}
