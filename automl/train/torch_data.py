"""A Dataset made of two torch Datasets of (C×H×W tensor, int label): checked, then decoded into memory or streamed.

A data set whose images fit in :data:`MEMORY_LOADER_MAX_BYTES` is decoded once into device tensors (the
in-memory loader); a larger one is streamed by DataLoader workers (:mod:`automl.train.streaming`). Both carve
val out of train with the seed as :func:`~automl.train.splits.assemble` does, and normalise with the same
statistics, so a model scores the same on either.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset as TorchDataset

from automl.errors import UserError
from automl.train.splits import STATS_CHUNK, Dataset, assemble, channel_stats, normaliser, val_size
from automl.train.streaming import StreamedSplit

__all__ = ["LOADERS", "MEMORY_LOADER_MAX_BYTES", "DECODE_WORKERS", "choose_loader", "from_torch"]

MEMORY_LOADER_MAX_BYTES = 4 * 2**30
"""The bound on the float32 bytes of all of a data set's images (train, val and test) below which it is decoded
once into device tensors; above it, it is streamed. 4 GiB holds ImageNet-sized images for some 20,000 images,
or CIFAR-10 five times over, and leaves room for the model on a 16 GiB device."""
LOADERS = ("auto", "memory", "stream")
"""``[task] loader``: ``auto`` chooses by :data:`MEMORY_LOADER_MAX_BYTES`."""
DECODE_WORKERS = min(4, os.cpu_count() or 1)
"""Worker processes that decode a data set loaded into memory."""


def choose_loader(loader: str, nbytes: int) -> str:
    """``memory`` or ``stream``: the one asked for, or by size for ``auto``."""
    if loader not in LOADERS:
        raise UserError(f"[task] loader must be one of {', '.join(LOADERS)}, got loader={loader!r}")
    if loader == "auto":
        return "memory" if nbytes <= MEMORY_LOADER_MAX_BYTES else "stream"
    return loader


def first_item(name: str, dataset: Any, what: str) -> tuple[Tensor, int]:
    """The first (image, label) of ``dataset``, checked: a UserError says what was expected and what came."""
    expected = "a torch.utils.data.Dataset whose items are (image tensor C×H×W, int label)"
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise UserError(f"dataset {name!r}: the {what} split must be {expected}, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise UserError(f"dataset {name!r}: the {what} split is empty; add images")
    item = dataset[0]
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise UserError(f"dataset {name!r}: the {what} split must be {expected}, got an item {_shown(item)}")
    image, label = item
    if not (isinstance(image, Tensor) and image.dim() == 3):
        raise UserError(f"dataset {name!r}: the {what} split's images must be tensors C×H×W, got {_shown(image)}")
    if isinstance(label, Tensor) and label.dim() == 0 and not label.is_floating_point():
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int):
        raise UserError(f"dataset {name!r}: the {what} split's labels must be ints, got {_shown(label)}")
    return image, label


def _shown(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"{type(value).__name__} {value!r}"[:80]


def from_torch(name: str, train: TorchDataset, test: TorchDataset | None, *, num_classes: int | None,
               val_fraction: float, seed: int, device: torch.device, loader: str) -> Dataset:
    """The Dataset of ``train`` (val carved out of it by ``seed``) and ``test`` (empty when None).

    ``num_classes`` None: one more than the largest label of train.
    """
    image, _ = first_item(name, train, "train")
    if test is not None:
        first_item(name, test, "test")
    n_test = 0 if test is None else len(test)
    nbytes = (len(train) + n_test) * image.numel() * 4
    chosen = choose_loader(loader, nbytes)
    started = time.perf_counter()
    n_val = val_size(len(train), val_fraction)
    if chosen == "memory":
        data = _in_memory(name, train, test, image, num_classes, n_val, seed, device)
    else:
        data = _streamed(name, train, test, image, num_classes, n_val, seed, device)
    return Dataset(**{**data.__dict__, "loader": chosen, "decode_seconds": time.perf_counter() - started})


def _decode(dataset: TorchDataset, image: Tensor) -> tuple[Tensor, Tensor]:
    """Every image and label of ``dataset`` as two tensors, decoded by worker processes."""
    x = torch.empty(len(dataset), *image.shape, dtype=image.dtype)
    y = torch.empty(len(dataset), dtype=torch.long)
    reading = DataLoader(dataset, batch_size=STATS_CHUNK, num_workers=DECODE_WORKERS)
    start = 0
    for xb, yb in reading:
        x[start:start + len(xb)], y[start:start + len(yb)] = xb, yb
        start += len(xb)
    return x, y


def _train_order(n: int, n_val: int, seed: int) -> tuple[Tensor, Tensor]:
    """(train positions, val positions) of a pool of ``n``, drawn as :func:`~automl.train.splits.assemble` does."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_val:], perm[:n_val]


def _in_memory(name, train, test, image, num_classes, n_val, seed, device) -> Dataset:
    pool = _decode(train, image)
    test_part = _decode(test, image) if test is not None else (pool[0][:0], pool[1][:0])
    train_idx, _ = _train_order(len(pool[1]), n_val, seed)
    stats = channel_stats(pool[0][train_idx[i:i + STATS_CHUNK]] for i in range(0, len(train_idx), STATS_CHUNK))
    num_classes = _classes(name, num_classes, pool[1], test_part[1])
    _test_classes_seen_in_train(name, pool[1], test_part[1])
    return assemble(name, pool, test_part, n_val=n_val, seed=seed, num_classes=num_classes, device=device,
                    stats=stats)


def _keeping_labels(batches, labels: list[Tensor]):
    """The images of ``batches``, their labels appended to ``labels`` on the way."""
    for x, y in batches:
        labels.append(y)
        yield x


def _classes(name: str, num_classes: int | None, *labels: Tensor) -> int:
    """``num_classes`` (one more than the largest label when None), every label checked to lie below it."""
    low = min(int(y.min()) for y in labels if len(y))
    high = max(int(y.max()) for y in labels if len(y))
    if num_classes is None:
        num_classes = high + 1
    if low < 0 or high >= num_classes:
        raise UserError(f"dataset {name!r}: labels must lie in 0..{num_classes - 1}, got labels from {low} to {high}")
    if num_classes < 2:
        raise UserError(f"dataset {name!r} has {num_classes} class; a classifier needs at least two")
    return num_classes


def _test_classes_seen_in_train(name: str, train: Tensor, test: Tensor) -> None:
    """Every class of the test split has training images, as an image folder's test classes must be its train
    classes: a test error over classes the model never saw measures nothing it could learn."""
    unseen = sorted(set(test.unique().tolist()) - set(train.unique().tolist()))
    if unseen:
        shown = ", ".join(map(str, unseen[:10])) + (", ..." if len(unseen) > 10 else "")
        raise UserError(f"dataset {name!r}: the test split has label(s) {shown} that no training image has (train "
                        f"labels {int(train.min())} to {int(train.max())}); give the train split every class, or "
                        "leave those out of test")


def _streamed(name, train, test, image, num_classes, n_val, seed, device) -> Dataset:
    train_idx, val_idx = _train_order(len(train), n_val, seed)
    # One pass of decoding for the statistics, in the in-memory loader's chunks so that both sum the same bits.
    counting = StreamedSplit(train, train_idx.tolist(), shift=torch.zeros(1, 1, 1), scale=torch.ones(1, 1, 1),
                             device=torch.device("cpu"), image_shape=image.shape, workers=DECODE_WORKERS,
                             persistent=False)
    labels: list[Tensor] = []
    mean, std = channel_stats(_keeping_labels(counting.batches(STATS_CHUNK), labels))
    num_classes = _classes(name, num_classes, torch.cat(labels))
    if test is not None and getattr(test, "targets", None) is not None:  # known without decoding the images
        _test_classes_seen_in_train(name, torch.cat(labels), torch.as_tensor(test.targets))
    shift, scale, std_t = normaliser(*(torch.tensor(v, dtype=torch.float32, device=device) for v in (mean, std)))

    def part(dataset: TorchDataset, indices: Sequence[int]) -> StreamedSplit:
        return StreamedSplit(dataset, indices, shift=shift, scale=scale, device=device, image_shape=image.shape)

    test_part = part(test, range(len(test))) if test is not None else part(train, [])
    return Dataset(name=name, train=part(train, train_idx.tolist()), val=part(train, val_idx.tolist()),
                   test=test_part, num_classes=num_classes, input_shape=tuple(image.shape),
                   mean=tuple(shift.flatten().tolist()), std=tuple(std_t.tolist()))
