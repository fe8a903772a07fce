"""A loader of shuffled, augmented mini-batches that never leaves the device the data is on."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from automl.errors import UserError
from automl.train.augment import augment_batch, default_padding
from automl.train.splits import Split

__all__ = ["InMemoryLoader"]


class InMemoryLoader:
    """Shuffled mini-batches of a Split, without leaving the device.

    Every epoch draws a fresh permutation on the split's device and indexes the
    whole batch with a slice of it; augmentation (a reflect-padded random crop,
    then a random flip unless ``flip=False``) is applied to the whole batch;
    ``padding=None`` is :func:`~automl.train.augment.default_padding` of the
    image width. ``batch_size`` may be changed between epochs; an epoch in
    progress keeps the size it started with.
    Without shuffling the batches are views of the split: do not modify them in place.
    After :meth:`shard`, each batch is this rank's part of the global batch of ``batch_size``.
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
        self.padding = default_padding(split.x.shape[-1]) if padding is None else padding
        self.flip = flip
        self.drop_last = drop_last
        # One generator on the data's device for permutations and augmentation alike:
        # drawing there costs no transfer and no synchronisation.
        self.generator = torch.Generator(device=split.x.device).manual_seed(seed)
        self.augment_generator = self.generator
        self.seed, self.rank, self.world_size = seed, 0, 1

    def shard(self, rank: int, world_size: int) -> None:
        """Yield only rank ``rank``'s part of each global batch, one of ``world_size`` parts that differ in size by
        one at most. Every rank draws the same order (the seed's) and augments its own part with a generator of
        its own, so the ranks do not crop and flip alike."""
        self.rank, self.world_size = rank, world_size
        if world_size > 1:
            own_seed = int(np.random.SeedSequence([self.seed % 2**64, rank]).generate_state(1)[0])
            self.augment_generator = torch.Generator(device=self.split.x.device).manual_seed(own_seed)

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
                xb, yb = (t[window].tensor_split(self.world_size)[self.rank] for t in (x, y))
            else:
                idx = order[window].tensor_split(self.world_size)[self.rank]
                xb, yb = x[idx], y[idx]
            if self.augment:
                xb = augment_batch(xb, padding=self.padding, flip=self.flip, generator=self.augment_generator)
            yield xb, yb
