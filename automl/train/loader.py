"""A loader of shuffled mini-batches, augmented whole on the device, from an in-memory or a streamed split."""

from __future__ import annotations

import math
import time
from typing import Any, Iterator

import numpy as np
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
        self.padding = default_padding(split.image_shape[-1]) if padding is None else padding
        self.flip = flip
        self.drop_last = drop_last
        # One generator on the data's device for permutations and augmentation alike:
        # drawing there costs no transfer and no synchronisation.
        self.generator = torch.Generator(device=split.device).manual_seed(seed)
        self.augment_generator = self.generator
        self.seed, self.rank, self.world_size = seed, 0, 1
        self.wait_seconds = 0.0
        self._pass: tuple[Tensor | None, int, int] | None = None
        """(order, next batch, batch size) of the pass in progress; None between passes."""
        self._resumed: tuple[Tensor | None, int, int] | None = None
        """The pass a checkpoint was in, for the next ``iter`` to continue."""

    def shard(self, rank: int, world_size: int) -> None:
        """Yield only rank ``rank``'s part of each global batch, one of ``world_size`` parts that differ in size by
        one at most. Every rank draws the same order (the seed's) and augments its own part with a generator of
        its own, so the ranks do not crop and flip alike."""
        self.rank, self.world_size = rank, world_size
        if world_size > 1:
            own_seed = int(np.random.SeedSequence([self.seed % 2**64, rank]).generate_state(1)[0])
            self.augment_generator = torch.Generator(device=self.split.device).manual_seed(own_seed)

    def _own_part(self, window: slice | Tensor) -> slice | Tensor:
        """This rank's part of one global batch (all of it on one device)."""
        if self.world_size == 1:
            return window
        if isinstance(window, slice):
            window = torch.arange(window.start, min(window.stop, len(self.split)), device=self.split.device)
        return window.tensor_split(self.world_size)[self.rank]

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
        order, first, batch_size = self._resumed or self._new_pass()
        self._resumed = None
        batches = self._num_batches(batch_size)
        windows = (slice(i * batch_size, (i + 1) * batch_size) for i in range(first, batches))
        taken = self.split.take(self._own_part(w if order is None else order[w]) for w in windows)
        for i in range(first, batches):
            started = time.perf_counter()
            xb, yb = next(taken)
            self.wait_seconds += time.perf_counter() - started
            if self.augment:
                xb = augment_batch(xb, padding=self.padding, flip=self.flip, generator=self.augment_generator)
            # Where the pass is, for a checkpoint taken before the next batch; after its last, none is open.
            self._pass = None if i + 1 == batches else (order, i + 1, batch_size)
            yield xb, yb

    def _new_pass(self) -> tuple[Tensor | None, int, int]:
        if not self.shuffle:
            return None, 0, self._batch_size
        return torch.randperm(len(self.split), generator=self.generator, device=self.split.device), 0, self._batch_size

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is, between two batches: its generator, its batch size, the pass it is in (its order
        and next batch; None between two passes), and after :meth:`shard` its rank's own augmentation generator
        (None before), as plain tensors and numbers."""
        open_pass = None
        if self._pass is not None:
            order, first, batch_size = self._pass
            open_pass = {"order": None if order is None else order.cpu(), "next": first, "batch_size": batch_size}
        augment = None if self.augment_generator is self.generator else self.augment_generator.get_state()
        return {"generator": self.generator.get_state(), "batch_size": self._batch_size, "pass": open_pass,
                "augment": augment}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from ``state``: the next ``iter`` continues the pass it was in (or starts the next one)."""
        self.generator.set_state(state["generator"])
        if state.get("augment") is not None:  # saved by one rank of several (after ``shard``)
            self.augment_generator.set_state(state["augment"])
        self.batch_size = state["batch_size"]
        open_pass = state["pass"]
        if open_pass is not None:
            order = open_pass["order"]
            order = None if order is None else order.to(self.split.device)
            self._resumed = self._pass = (order, open_pass["next"], open_pass["batch_size"])


InMemoryLoader = Loader
"""The name older importers use."""
