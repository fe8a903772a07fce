"""A loader of shuffled mini-batches, augmented whole on the device, from an in-memory or a streamed split."""

from __future__ import annotations

import math
import time
from typing import Iterator

import torch
from torch import Tensor

from automl.errors import UserError
from automl.train.augment import augment_batch, default_padding
from automl.train.splits import Split

__all__ = ["InMemoryLoader", "Loader"]


class Loader:
    """Shuffled mini-batches of a split: a :class:`~automl.train.splits.Split` held on the device, or a
    :class:`~automl.train.streaming.StreamedSplit` read by worker processes; the batches are the same.

    Every epoch draws a fresh permutation on the split's device and takes the
    whole batch with a slice of it; augmentation (a reflect-padded random crop,
    then a random flip unless ``flip=False``) is applied to the whole batch;
    ``padding=None`` is :func:`~automl.train.augment.default_padding` of the
    image width. ``batch_size`` may be changed between epochs; an epoch in
    progress keeps the size it started with.
    Without shuffling the batches are views of the split: do not modify them in place.
    ``wait_seconds`` adds up the time spent waiting for batches (the data's, not the model's).
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        padding: int | None = None,
        flip: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.padding = default_padding(split.image_shape[-1]) if padding is None else padding
        self.flip = flip
        self.drop_last = drop_last
        # One generator on the data's device for permutations and augmentation alike:
        # drawing there costs no transfer and no synchronisation.
        self.generator = torch.Generator(device=split.device).manual_seed(seed)
        self.wait_seconds = 0.0

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
        batch_size, n = self._batch_size, len(self.split)
        order = (torch.randperm(n, generator=self.generator, device=self.split.device) if self.shuffle else None)
        windows = (slice(i * batch_size, (i + 1) * batch_size) for i in range(self._num_batches(batch_size)))
        batches = self.split.take(windows if order is None else (order[w] for w in windows))
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            self.wait_seconds += time.perf_counter() - started
            if batch is None:
                return
            xb, yb = batch
            if self.augment:
                xb = augment_batch(xb, padding=self.padding, flip=self.flip, generator=self.generator)
            yield xb, yb


InMemoryLoader = Loader
"""The name older importers use."""
