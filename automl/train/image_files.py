"""Write a small, learnable image folder of PNG files (``root/train/CLASS/*.png``, ``root/test/...``) for
tests, examples and benchmarks that must run offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_image_folder"]

NOISE = 40.0
"""The noise's standard deviation, in the 0-255 units of a pixel: the classes stay apart, but not trivially."""


def write_image_folder(root: str | Path, *, classes: int = 3, train: int = 24, test: int = 8,
                       size: tuple[int, int] = (16, 16), seed: int = 0) -> Path:
    """``train`` and ``test`` RGB PNG images of ``size`` (H, W) per class, each a smooth class colour pattern
    plus noise; ``test=0`` writes no test folder. Returns ``root``."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    rows, cols = np.mgrid[0:h, 0:w]
    for split, count in (("train", train), ("test", test)):
        for c in range(classes if count else 0):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            # A class is a colour and a stripe direction, both mirror-symmetric, so crops and flips keep it.
            colour = np.array([(c * 97) % 256, (c * 53 + 80) % 256, (c * 31 + 160) % 256], dtype=np.float64)
            stripes = np.cos((rows if c % 2 else np.abs(cols - (w - 1) / 2)) * np.pi * (1 + c) / max(h, w))
            base = colour[None, None, :] * (0.6 + 0.4 * stripes[..., None])
            images = base[None] + rng.normal(0.0, NOISE, (count, h, w, 3))
            for i, image in enumerate(np.clip(images, 0, 255).astype(np.uint8)):
                Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root
