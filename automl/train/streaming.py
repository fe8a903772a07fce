"""A split read from a torch Dataset by DataLoader worker processes, batch by batch, and normalised on the device."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset as TorchDataset

__all__ = ["PREFETCH_FACTOR", "STREAM_WORKERS", "StreamedSplit"]

STREAM_WORKERS = min(4, os.cpu_count() or 1)
"""Worker processes that decode the images of one streamed split."""
PREFETCH_FACTOR = 4
"""Batches each worker decodes ahead of the one being trained on."""


class _Windows:
    """The batch sampler of a split's DataLoader: the index batches of the pass being read, set before it starts,
    so that one DataLoader (and its persistent workers) serves every pass, whatever its order and batch size."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _one_ahead(batches: Iterator[tuple[Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
    """``batches``, each one yielded once the next one's copy has been queued: on a GPU that copy (from pinned
    memory, without blocking) overlaps the step on this one. On the CPU there is no copy to overlap, and waiting
    for the next batch before the step on this one only delays the step (8% of throughput on 2 cores)."""
    ahead = next(batches, None)
    for batch in batches:
        yield ahead
        ahead = batch
    if ahead is not None:
        yield ahead


class StreamedSplit:
    """Images and labels of one part of a data set, read on demand from ``dataset`` at ``indices``.

    It has the interface of :class:`~automl.train.splits.Split` but ``x`` and ``y``: its batches are decoded by
    worker processes into pinned memory, copied to ``device`` without blocking one batch ahead, and normalised
    there as ``(x - shift) * scale`` (the in-memory split's arithmetic, so that both give the same bits).
    """

    def __init__(self, dataset: TorchDataset, indices: Sequence[int], *, shift: Tensor, scale: Tensor,
                 device: torch.device, image_shape: tuple[int, ...], workers: int = STREAM_WORKERS,
                 persistent: bool = True) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.shift, self.scale = shift.to(device), scale.to(device)
        self.device, self.image_shape, self.workers = device, tuple(image_shape), workers
        self.persistent = persistent  # False: the workers end with each pass (a split read once)
        self._windows = _Windows()
        self._loader: DataLoader | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _dataloader(self) -> DataLoader:
        if self._loader is None:
            # Made on first use: a split that is never read starts no processes.
            more = {"persistent_workers": self.persistent, "prefetch_factor": PREFETCH_FACTOR} if self.workers else {}
            self._loader = DataLoader(self.dataset, batch_sampler=self._windows, num_workers=self.workers,
                                      pin_memory=self.device.type == "cuda", **more)
        return self._loader

    def take(self, windows: Iterable[slice | Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) on the device for each window of positions in the split (a slice or a tensor)."""
        positions = range(len(self.indices))
        self._windows.batches = [[self.indices[i] for i in (positions[w] if isinstance(w, slice) else w.tolist())]
                                 for w in windows]
        if not self._windows.batches:
            return
        on_device = (self._to_device(raw) for raw in self._dataloader())
        for batch in _one_ahead(on_device) if self.device.type == "cuda" else on_device:
            yield self._normalise(batch)

    def _to_device(self, raw: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        x, y = raw
        return x.to(self.device, non_blocking=True), y.to(self.device, torch.long, non_blocking=True)

    def _normalise(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, y = batch
        return (x.float() - self.shift) * self.scale, y

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """(x, y) of ``batch_size`` images in stored order, the last one shorter."""
        return self.take(slice(start, start + batch_size) for start in range(0, len(self), batch_size))

    def head(self, n: int) -> Tensor:
        """The first ``n`` images."""
        return next(self.batches(n))[0] if len(self) else torch.empty(0, *self.image_shape, device=self.device)
