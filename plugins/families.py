"""The built-in source families: ``torchvision:NAME`` and ``timm:NAME`` models, ``torchvision:NAME`` data sets,
and ``package.module:callable`` for both, registered as a plugin like any other's family (``hf:NAME``, say)."""

from __future__ import annotations

from automl import hookimpl
from automl.registrations import IMPORT_PATH
from automl.train import datasets, models


@hookimpl
def automl_register_model_families():
    return {"torchvision": models.from_torchvision, "timm": models.from_timm, IMPORT_PATH: models.from_import_path}


@hookimpl
def automl_register_dataset_families():
    return {"torchvision": datasets.from_torchvision, IMPORT_PATH: datasets.from_import_path}
