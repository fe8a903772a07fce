"""A data set of my own for automl: two classes of 6x6 images, bright on the left or on the right."""

import torch
from torch.utils.data import TensorDataset

from automl import hookimpl
from automl.train.torch_data import from_torch


def load_halves(*, root, val_fraction, seed, device, download, verify, loader, n=64):
    """Images bright on one half, the class saying which, plus a little noise."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 6, 6, generator=gen) * 0.3
    x[y == 0, :, :, :3] += 1.0
    x[y == 1, :, :, 3:] += 1.0
    return from_torch("halves", TensorDataset(x, y), None, num_classes=2, val_fraction=val_fraction, seed=seed,
                      device=device, loader=loader)


@hookimpl
def automl_register_datasets():
    return {"halves": load_halves}
