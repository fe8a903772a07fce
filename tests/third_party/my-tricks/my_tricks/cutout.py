"""Cutout (DeVries & Taylor 2017): a square patch of zeros at a random place of each chosen training image,
on whole batches on the device."""

from __future__ import annotations

import torch

from automl import Trick, hookimpl
from automl.checks import integer, number


def cutout(x: torch.Tensor, size: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with one ``size`` x ``size`` patch (at most the image) zeroed in each image chosen
    with probability ``p``; the patch lies inside the image."""
    n, _, h, w = x.shape
    sh, sw = min(size, h), min(size, w)
    top = torch.randint(0, h - sh + 1, (n, 1, 1), generator=generator, device=x.device)
    left = torch.randint(0, w - sw + 1, (n, 1, 1), generator=generator, device=x.device)
    chosen = (torch.rand(n, 1, 1, generator=generator, device=x.device) < p)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    patch = (rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + sw) & chosen
    return x.masked_fill(patch.unsqueeze(1), 0.0)


class Cutout(Trick):
    name = "cutout"

    @classmethod
    def search_space(cls, trial):
        return {"size": trial.suggest_int("size", 2, 16), "p": trial.suggest_float("p", 0.5, 1.0)}

    def __init__(self, size: int = 8, p: float = 1.0) -> None:
        self.size = integer(self.name, "size", size)
        self.p = float(number(self.name, "p", p, low=0, high=1))

    def setup(self, run) -> None:
        # The trial's seed (torch.initial_seed()) makes the patches of a study's trial reproducible, and a
        # generator of its own leaves the global one, and so everything else the run draws, as it was.
        self.generator = torch.Generator(device=run.device).manual_seed(torch.initial_seed())

    def transform_batch(self, run, x, y):
        return cutout(x, self.size, self.p, self.generator), y


@hookimpl
def automl_register_tricks():
    return [Cutout]
