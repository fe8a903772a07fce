"""Data sets held whole in device memory, split into train/val/test, and a loader that never leaves the device.

Every data set is loaded once, moved to the device once and normalised there
with per-channel statistics of its *train* part only, so that nothing of the
validation or test images leaks into training. A trial's ``seed`` decides which
samples go to train and which to val; the test set never depends on it, so
every trial of every study is scored on the same test images.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from automl.errors import UserError
from automl.train.augment import DEFAULT_PADDING, augment_batch

__all__ = [
    "DATASETS",
    "DATA_ROOT_ENV",
    "DEFAULT_DATA_ROOT",
    "Dataset",
    "InMemoryLoader",
    "Split",
    "load_dataset",
]

DATA_ROOT_ENV = "AUTOML_DATA"
DEFAULT_DATA_ROOT = "~/.cache/automl/data"

# digits ships without a test set: a seed of its own, never the trial's, fixes the
# held-out fifth so that all trials and all studies are scored on the same images.
_DIGITS_TEST_SEED = 1797
_DIGITS_TEST_FRACTION = 0.2

# Arguments every loader takes; anything else a loader accepts is a data-set option.
_COMMON_ARGS = frozenset({"root", "val_fraction", "seed", "device", "download", "verify"})


# eq=False: field-wise == on tensors is ambiguous; identity is what comparing splits can mean.
@dataclass(frozen=True, eq=False)
class Split:
    """Images and labels of one part of a data set, on one device."""

    x: Tensor  # float32, (N, C, H, W), normalised with the train part's per-channel mean and std
    y: Tensor  # int64, (N,)

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"Split has {self.x.shape[0]} images but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set split three ways, ready for training on the device it was loaded to."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    # The per-channel statistics the splits were normalised with, in the raw units
    # (0-255 for CIFAR, 0-16 for digits), to undo the normalisation for display.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


# --------------------------------------------------------------------------- assembly


def _val_size(n: int, val_fraction: float) -> int:
    if n < 2:
        raise UserError(f"a data set of {n} training sample(s) cannot be split into train and val; add data")
    # Both parts must keep at least one sample, or evaluation divides by zero.
    return min(max(round(n * val_fraction), 1), n - 1)


def _assemble(
    name: str,
    pool: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    n_val: int,
    seed: int,
    num_classes: int,
    device: torch.device,
) -> Dataset:
    """Split ``pool`` into train/val by ``seed``, move everything to ``device`` once, normalise there.

    Images arrive (N, C, H, W) in their raw dtype (uint8 for CIFAR): moving them
    before the float conversion sends a quarter of the bytes to the device.
    """
    # The permutation is drawn on the CPU so that a seed means the same split on every device.
    perm = torch.randperm(pool[1].shape[0], generator=torch.Generator().manual_seed(seed)).to(device)
    pool_x, pool_y = pool[0].to(device), pool[1].to(device, torch.long)
    parts = {
        "train": (pool_x[perm[n_val:]], pool_y[perm[n_val:]]),
        "val": (pool_x[perm[:n_val]], pool_y[perm[:n_val]]),
        "test": (test[0].to(device), test[1].to(device, torch.long)),
    }
    # Indexing by the permutation copied the images, so this float tensor is ours alone.
    train_x = parts["train"][0].float()
    std, mean = torch.std_mean(train_x, dim=(0, 2, 3), correction=0)
    # A constant channel would divide by zero; leaving it unscaled is harmless.
    std = torch.where(std > 0, std, torch.ones_like(std))
    scale, shift = (1.0 / std)[:, None, None], mean[:, None, None]

    def normalise(key: str, x: Tensor) -> Tensor:
        if key == "train":
            # In place: a second copy would cost half a gigabyte for CIFAR.
            return train_x.sub_(shift).mul_(scale).contiguous()
        return ((x.float() - shift) * scale).contiguous()

    splits = {key: Split(normalise(key, x), y.contiguous()) for key, (x, y) in parts.items()}
    c, h, w = train_x.shape[1:]
    return Dataset(
        name=name,
        num_classes=num_classes,
        input_shape=(c, h, w),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        **splits,
    )


# --------------------------------------------------------------------------- loaders


def _load_digits(
    *, root: Path, val_fraction: float, seed: int, device: torch.device, download: bool, verify: bool
) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits: 1797 images, 1 channel, 10 classes, no download."""
    from sklearn.datasets import load_digits  # deferred: a second of import time the CLI should not pay

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).float().unsqueeze(1)
    y = torch.from_numpy(bunch.target).long()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(_DIGITS_TEST_SEED))
    n_test = round(len(y) * _DIGITS_TEST_FRACTION)
    test_idx, pool_idx = perm[:n_test], perm[n_test:]
    return _assemble(
        "digits",
        (x[pool_idx], y[pool_idx]),
        (x[test_idx], y[test_idx]),
        n_val=_val_size(len(pool_idx), val_fraction),
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


def _load_cifar(
    name: str,
    *,
    root: Path,
    val_fraction: float,
    seed: int,
    device: torch.device,
    download: bool,
    verify: bool,
) -> Dataset:
    """CIFAR-10/100 through torchvision: the official test set, val carved out of the official train set."""
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
    return _assemble(
        name,
        pool,
        tensors(test),
        n_val=_val_size(len(pool[1]), val_fraction),
        seed=seed,
        num_classes=len(train.classes),
        device=device,
    )


def _load_synthetic(
    *,
    root: Path,
    val_fraction: float,
    seed: int,
    device: torch.device,
    download: bool,
    verify: bool,
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
    return _assemble(
        "synthetic", pool, test, n_val=n_val, seed=seed, num_classes=num_classes, device=device
    )


def _check_synthetic(
    num_classes: Any, shape: Any, n_train: Any, n_val: Any, n_test: Any, noise: Any
) -> tuple[int, int, int]:
    def positive_int(key: str, value: Any, least: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"synthetic option {key} must be an integer >= {least}, got {key}={value!r}")

    positive_int("num_classes", num_classes, 2)
    for key, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        positive_int(key, value)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise UserError(f"synthetic option noise must be a number >= 0, got noise={noise!r}")
    if (
        isinstance(shape, (str, bytes))
        or not isinstance(shape, Sequence)
        or len(shape) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
    ):
        raise UserError(
            f"synthetic option shape must be three positive integers [C, H, W], got shape={shape!r}"
        )
    return (shape[0], shape[1], shape[2])


DATASETS: dict[str, Callable[..., Dataset]] = {
    "cifar10": functools.partial(_load_cifar, "cifar10"),
    "cifar100": functools.partial(_load_cifar, "cifar100"),
    "digits": _load_digits,
    "synthetic": _load_synthetic,
}


def _options_of(loader: Callable[..., Dataset]) -> list[str]:
    params = inspect.signature(loader).parameters
    return sorted(p for p in params if p not in _COMMON_ARGS)


def _data_root(root: str | os.PathLike[str] | None) -> Path:
    chosen = root if root is not None else os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser()


def _device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"unknown device {device!r}; use e.g. 'cpu' or 'cuda' ({exc})") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(device)!r} requested but no CUDA device is available; use device 'cpu'")
    return resolved


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    download: bool = True,
    verify: bool = True,
    **options: Any,
) -> Dataset:
    """Load data set ``name`` to ``device``, split and normalised.

    ``root`` defaults to ``$AUTOML_DATA``, else ``~/.cache/automl/data``.
    ``val_fraction`` of the training data, chosen by ``seed``, becomes val.
    ``verify=False`` accepts CIFAR files whose md5 differs from the official one.
    ``options`` are specific to a data set (``synthetic``: ``num_classes``,
    ``shape``, ``n_train``, ``n_val``, ``n_test``, ``noise``, ``data_seed``).
    """
    loader = DATASETS.get(name)
    if loader is None:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS))}")
    valid = _options_of(loader)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(
            f"unknown option {unknown[0]!r} for dataset {name!r}; valid: {', '.join(valid) or 'none'}"
        )
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must lie strictly between 0 and 1, got val_fraction={val_fraction!r}")
    return loader(
        root=_data_root(root),
        val_fraction=float(val_fraction),
        seed=seed,
        device=_device(device),
        download=download,
        verify=verify,
        **options,
    )


# --------------------------------------------------------------------------- loader


class InMemoryLoader:
    """Shuffled mini-batches of a Split, without leaving the device.

    Every epoch draws a fresh permutation on the split's device and indexes the
    whole batch with a slice of it; augmentation (a reflect-padded random crop,
    then a random flip unless ``flip=False``) is applied to the whole batch. ``batch_size`` may be
    changed between epochs; an epoch in progress keeps the size it started with.
    Without shuffling the batches are views of the split: do not modify them in place.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        padding: int = DEFAULT_PADDING,
        flip: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.padding = padding
        self.flip = flip
        self.drop_last = drop_last
        # One generator on the data's device for permutations and augmentation alike:
        # drawing there costs no transfer and no synchronisation.
        self.generator = torch.Generator(device=split.x.device).manual_seed(seed)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"batch_size must be a positive integer, got batch_size={value!r}")
        self._batch_size = value

    def _num_batches(self, batch_size: int) -> int:
        n = len(self.split)
        # A batch larger than the split still yields the whole split once, not nothing.
        if self.drop_last and n >= batch_size:
            return n // batch_size
        return math.ceil(n / batch_size)

    def __len__(self) -> int:
        return self._num_batches(self._batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.split.x, self.split.y
        batch_size = self._batch_size
        order = (
            torch.randperm(len(self.split), generator=self.generator, device=x.device) if self.shuffle else None
        )
        for i in range(self._num_batches(batch_size)):
            window = slice(i * batch_size, (i + 1) * batch_size)
            if order is None:
                xb, yb = x[window], y[window]
            else:
                idx = order[window]
                xb, yb = x[idx], y[idx]
            if self.augment:
                xb = augment_batch(xb, padding=self.padding, flip=self.flip, generator=self.generator)
            yield xb, yb
