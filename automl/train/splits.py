"""The Split and Dataset types, and the assembly every source uses to make a Dataset from raw tensors.

Every data set is loaded once, moved to the device once and normalised there
with per-channel statistics of its *train* part only, so that nothing of the
validation or test images leaks into training. A trial's ``seed`` decides which
samples go to train and which to val; the test set never depends on it, so
every trial of every study is scored on the same test images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from automl.errors import UserError

__all__ = ["Dataset", "Split", "assemble", "channel_stats", "normaliser", "val_size"]

STATS_CHUNK = 256
"""Images per chunk when the per-channel statistics are summed: the same chunks for both loaders, so that an
in-memory and a streamed copy of one data set are normalised with the same bits."""


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

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) of ``batch_size`` images in stored order, the last one shorter: views, do not modify."""
        return self.take(slice(start, start + batch_size) for start in range(0, len(self), batch_size))

    def take(self, windows: Iterable[slice | Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) of each window, a slice or a tensor of indices on the split's device."""
        x, y = self.x, self.y
        for window in windows:
            yield x[window], y[window]

    def head(self, n: int) -> Tensor:
        """The first ``n`` images."""
        return self.x[:n]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set split three ways, ready for training on the device it was loaded to."""

    name: str
    train: Split  # or a streamed split of the same interface (automl.train.streaming.StreamedSplit)
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    # The per-channel statistics the splits were normalised with, in the raw units
    # (0-255 for CIFAR, 0-16 for digits), to undo the normalisation for display.
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    loader: str = "memory"
    """How the images reach the device: ``memory`` (decoded once into device tensors) or ``stream``."""
    decode_seconds: float = 0.0
    """Seconds spent decoding the images when the data set was loaded: charged to no trial."""


def val_size(n: int, val_fraction: float) -> int:
    """How many of ``n`` pooled training samples become val for ``val_fraction``."""
    if n < 2:
        raise UserError(f"a data set of {n} training sample(s) cannot be split into train and val; add data")
    # Both parts must keep at least one sample, or evaluation divides by zero.
    return min(max(round(n * val_fraction), 1), n - 1)


def assemble(
    name: str,
    pool: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    n_val: int,
    seed: int,
    num_classes: int,
    device: torch.device,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Dataset:
    """Split ``pool`` into train/val by ``seed``, move everything to ``device`` once, normalise there.

    Images arrive (N, C, H, W) in their raw dtype (uint8 for CIFAR): moving them
    before the float conversion sends a quarter of the bytes to the device.
    ``stats`` (per-channel mean, std of the train part) are computed here when not given.
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
    if stats is None:
        std, mean = torch.std_mean(train_x, dim=(0, 2, 3), correction=0)
    else:
        mean, std = (torch.tensor(v, dtype=torch.float32, device=device) for v in stats)
    shift, scale, std = normaliser(mean, std)

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


def normaliser(mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(shift, scale) of shape (C, 1, 1), an image being normalised as ``(x - shift) * scale``, and the std
    they divide by."""
    # A constant channel would divide by zero; leaving it unscaled is harmless.
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean[:, None, None], (1.0 / std)[:, None, None], std


def channel_stats(chunks: Iterable[Tensor]) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) over chunks of (N, C, H, W) images, summed in float64 on the CPU."""
    total = squares = None
    count = 0
    for chunk in chunks:
        x = chunk.to("cpu", torch.float64)
        sums, sq = x.sum(dim=(0, 2, 3)), x.square().sum(dim=(0, 2, 3))
        total, squares = (sums, sq) if total is None else (total + sums, squares + sq)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if total is None:
        raise UserError("the training split is empty; add images")
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()
