"""The built-in data-set sources (scikit-learn's digits, CIFAR-10/100, a synthetic toy task) and where they keep files.

A source takes the arguments every source takes (``root``, ``val_fraction``,
``seed``, ``device``, ``download``, ``verify``) by keyword, plus options of its
own, and returns an assembled :class:`~automl.train.splits.Dataset`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from automl import checks
from automl.errors import UserError
from automl.train.splits import Dataset, assemble, val_size

__all__ = ["DATA_ROOT_ENV", "DEFAULT_DATA_ROOT", "data_root", "in_memory_only", "load_cifar", "load_digits",
           "load_synthetic"]

DATA_ROOT_ENV = "AUTOML_DATA"
DEFAULT_DATA_ROOT = "~/.cache/automl/data"

# digits ships without a test set: a seed of its own, never the trial's, fixes the
# held-out fifth so that all trials and all studies are scored on the same images.
_DIGITS_TEST_SEED = 1797
_DIGITS_TEST_FRACTION = 0.2


def data_root(root: str | os.PathLike[str] | None) -> Path:
    """``root``, else ``$AUTOML_DATA``, else ``~/.cache/automl/data``."""
    chosen = root if root is not None else os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser()



def in_memory_only(name: str, loader: str) -> None:
    """A data set built from tensors is always held in memory: asking to stream it is an error."""
    if loader == "stream":
        raise UserError(f"dataset {name!r} is held in memory; loader = 'stream' is for imagefolder, "
                        "torchvision:NAME and package.module:callable data sets")


def load_digits(
    *, root: Path, val_fraction: float, seed: int, device: torch.device, download: bool, verify: bool, loader: str
) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits: 1797 images, 1 channel, 10 classes, no download."""
    in_memory_only("digits", loader)
    from sklearn.datasets import load_digits as load_bunch  # deferred: a second of import time the CLI should not pay

    bunch = load_bunch()
    x = torch.from_numpy(bunch.images).float().unsqueeze(1)
    y = torch.from_numpy(bunch.target).long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(_DIGITS_TEST_SEED))
    n_test = round(len(y) * _DIGITS_TEST_FRACTION)
    test_idx, pool_idx = perm[:n_test], perm[n_test:]
    return assemble(
        "digits",
        (x[pool_idx], y[pool_idx]),
        (x[test_idx], y[test_idx]),
        n_val=val_size(len(pool_idx), val_fraction),
        seed=seed,
        num_classes=10,
        device=device,
    )


@functools.cache
def _cifar_class(name: str, verify: bool) -> type:
    """torchvision's CIFAR loader, or a subclass of it that checks only that the files exist."""
    from torchvision import datasets  # deferred: torchvision is slow to import

    base = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    if verify:
        return base

    # torchvision's check_integrity(path, md5=None) tests existence only; without the
    # md5s a re-packed or hand-made copy in the official format loads as it is.
    class Unverified(base):  # type: ignore[misc, valid-type]
        train_list = [[filename, None] for filename, _ in base.train_list]
        test_list = [[filename, None] for filename, _ in base.test_list]
        meta = {**base.meta, "md5": None}

    Unverified.__name__ = Unverified.__qualname__ = f"Unverified{base.__name__}"
    return Unverified


def load_cifar(
    name: str,
    *,
    root: Path,
    val_fraction: float,
    seed: int,
    device: torch.device,
    download: bool,
    verify: bool,
    loader: str,
) -> Dataset:
    """CIFAR-10/100 through torchvision: the official test set, val carved out of the official train set."""
    in_memory_only(name, loader)
    cls = _cifar_class(name, verify)
    folder = root / cls.base_folder
    files = [entry[0] for entry in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [f for f in files if not (folder / f).is_file()]
    where = (
        f"place the extracted '{cls.base_folder}' folder under {root},"
        f" or set [task] data_root (or {DATA_ROOT_ENV}) to where it is"
    )
    if missing and not download:
        raise UserError(f"{name} not found: {folder / missing[0]} is missing and download is off; {where}")
    try:
        train = cls(str(root), train=True, download=download)
        # The train constructor has just checked every file, the test ones included.
        test = _cifar_class(name, False)(str(root), train=False)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise UserError(
            f"{name} files under {folder} fail torchvision's md5 check ({exc});"
            f" delete them to download again, or set verify = false to accept a non-official copy"
        ) from exc
    except OSError as exc:  # urllib's URLError included: offline, proxy, disk full
        raise UserError(f"could not download {name} to {root} ({exc}); {where}") from exc

    def tensors(ds: Any) -> tuple[Tensor, Tensor]:
        # torchvision keeps (N, H, W, C) uint8: a permuted view, no copy until the device.
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets, dtype=torch.long)

    pool = tensors(train)
    return assemble(
        name,
        pool,
        tensors(test),
        n_val=val_size(len(pool[1]), val_fraction),
        seed=seed,
        num_classes=len(train.classes),
        device=device,
    )


def load_synthetic(
    *,
    root: Path,
    val_fraction: float,
    seed: int,
    device: torch.device,
    download: bool,
    verify: bool,
    loader: str,
    num_classes: int = 10,
    shape: Sequence[int] = (3, 16, 16),
    n_train: int = 512,
    n_val: int = 128,
    n_test: int = 128,
    noise: float = 4.0,
    data_seed: int = 0,
) -> Dataset:
    """A learnable toy task of any size: a fixed prototype per class plus Gaussian noise.

    The images are a function of ``data_seed`` alone, so every trial sees the
    same samples; as for the real data sets, the trial's ``seed`` only decides
    which ``n_train + n_val`` pooled samples are train and which are val, and the
    test samples stay fixed. ``val_fraction`` is ignored: the sizes are explicit.

    Prototypes are smooth (a 4x4 grid of random values upsampled) and mirror
    symmetric, so a crop moves them little and a flip not at all: augmentation
    helps rather than destroys the signal. Each has unit RMS per pixel, so
    ``noise`` is the noise-to-signal ratio per pixel.
    """
    in_memory_only("synthetic", loader)
    shape = _check_synthetic(num_classes, shape, n_train, n_val, n_test, noise)
    c, h, w = shape
    gen = torch.Generator().manual_seed(data_seed)
    coarse = torch.randn(num_classes, c, min(h, 4), min(w, 4), generator=gen)
    protos = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    protos = (protos + protos.flip(-1)) / 2
    protos = protos / protos.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-6)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        # Balanced classes keep the val error of a small set from swinging with class counts.
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        return protos[y] + noise * torch.randn(n, c, h, w, generator=gen), y

    pool, test = draw(n_train + n_val), draw(n_test)
    return assemble(
        "synthetic", pool, test, n_val=n_val, seed=seed, num_classes=num_classes, device=device
    )


def _check_synthetic(
    num_classes: Any, shape: Any, n_train: Any, n_val: Any, n_test: Any, noise: Any
) -> tuple[int, int, int]:
    owner = "synthetic option"
    try:
        checks.integer(owner, "num_classes", num_classes, at_least=2)
        for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            checks.integer(owner, key, value)
        checks.number(owner, "noise", noise, low=0, must="a number >= 0")  # infinite noise: valid, if useless
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or len(shape) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
    ):
        raise UserError(f"{owner} shape must be three positive integers [C, H, W], got shape={shape!r}")
    return (shape[0], shape[1], shape[2])
