"""Cutout: zero one square patch at a random place in each training image.

DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks with Cutout"; in the
final recipe of Page 2018, "How to train your ResNet" (8x8 patches on 32x32 CIFAR-10 images). As in
DeVries & Taylor, the patch's centre is uniform over the image and the patch is clipped at the border,
so a patch near an edge is smaller. The patch side is a fraction of the image side, so that one setting
means the same on 8x8 and 32x32 images. Zero is the mean of the normalised data. Each image gets a
patch with probability ``p``; the whole batch is masked at once, on its device.
"""

from __future__ import annotations

import torch

from automl import Trick, hookimpl
from automl.checks import integer, number
from automl_plugins._shared import DeviceGenerator


def patch_side(fraction: float, side: int) -> int:
    """The patch side in pixels for an image side of ``side``: ``round(fraction * side)``, at least 1."""
    return max(1, round(fraction * side))


def cutout_mask(n: int, h: int, w: int, side: int, p: float, generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """A (N, 1, H, W) bool mask, True in the one patch of each chosen image (chosen with probability ``p``).

    The patch covers rows ``[cy - side // 2, cy - side // 2 + side)`` (and the same for columns), clipped
    to the image, with its centre ``(cy, cx)`` uniform over the pixels.
    """
    draws = torch.rand((3, n), generator=generator, device=generator.device).to(device, non_blocking=True)
    chosen = draws[0] < p
    top = (draws[1] * h).long().clamp(max=h - 1) - side // 2
    left = (draws[2] * w).long().clamp(max=w - 1) - side // 2
    rows = torch.arange(h, device=device)[None, :] - top[:, None]  # (N, H): the row within the patch
    cols = torch.arange(w, device=device)[None, :] - left[:, None]
    inside = ((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :]
    return (inside & chosen[:, None, None])[:, None]


class Cutout(Trick):
    name = "cutout"
    # Before the other batch transforms (mixup is -10): the patch is cut from the image as the loader gave it.
    order = -20

    @classmethod
    def search_space(cls, trial):
        # DeVries & Taylor's best patches are half the side (CIFAR-10) and a quarter (CIFAR-100); Page's a quarter.
        return {"size": trial.suggest_float("size", 0.1, 0.6),
                "p": trial.suggest_float("p", 0.25, 1.0)}

    def __init__(self, size: float = 0.25, p: float = 1.0, seed: int | None = None) -> None:
        """``size``: the patch side as a fraction of the image side, in (0, 1]; ``p``: the probability that an
        image gets a patch, in (0, 1]; ``seed``: of the draws, None for ``torch.initial_seed()`` at setup
        (which the study sets per trial)."""
        number(self.name, "size", size, low=0, high=1, low_open=True)
        number(self.name, "p", p, low=0, high=1, low_open=True)
        if seed is not None:
            integer(self.name, "seed", seed, at_least=0, must="a non-negative integer or None")
        self.size, self.p, self.seed = float(size), float(p), seed
        self.mask: torch.Tensor | None = None
        """The mask of the last batch (for inspection): True where pixels were zeroed."""

    def setup(self, run) -> None:
        self._generator = DeviceGenerator(run, self.name, self.seed)

    def state_dict(self, run) -> dict:
        return {"generator": self._generator.state()}

    def load_state_dict(self, run, state: dict) -> None:
        self._generator.load(run, state["generator"])

    def transform_batch(self, run, x, y):
        if x.ndim != 4:
            raise ValueError(f"cutout needs image batches shaped (N, C, H, W), got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        generator = self._generator.on(x.device)
        self.mask = cutout_mask(n, h, w, patch_side(self.size, min(h, w)), self.p, generator, x.device)
        return x.masked_fill(self.mask, 0), y


@hookimpl
def automl_register_tricks():
    return [Cutout]
