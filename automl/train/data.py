"""The data-set names older importers use, re-exported from the modules that define them."""

from __future__ import annotations

from automl.train.datasets import load_dataset
from automl.train.loader import InMemoryLoader
from automl.train.sources import DATA_ROOT_ENV, DEFAULT_DATA_ROOT
from automl.train.splits import Dataset, Split

__all__ = [
    "DATA_ROOT_ENV",
    "DEFAULT_DATA_ROOT",
    "Dataset",
    "InMemoryLoader",
    "Split",
    "load_dataset",
]
