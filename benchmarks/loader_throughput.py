"""automl's streaming loader against a hand-written DataLoader training loop over the same image folder.

What it measures: training throughput (samples per second of training steps) of
``automl.train.loop.train`` on an ``imagefolder`` data set with ``loader = "stream"``,
divided by that of the loop a person would write by hand with torchvision's ``ImageFolder``
and a ``DataLoader`` of the same worker processes (persistent, pinned memory on a GPU),
over the same PNG files, model (same seeded init, a fresh copy every run), batch size,
SGD settings and number of steps. Both decode every image in the workers, copy each batch
to the device and normalise it there; augmentation is off on both sides, so the difference
is automl's own work: its batch sampler, the one-batch-ahead copy, the wait timing, the
budget bookkeeping and the hooks.

The two run side by side in one process (A B, B A, ...), each DataLoader's workers started
before the timing; the ratio is the median of the pairs' ratios.

Run it::

    python benchmarks/loader_throughput.py                    # a few minutes on a 2-core CPU
    python benchmarks/loader_throughput.py --device cuda --images 2000

The last line is ``ratio=<automl / hand-written>``. Goal: at least 0.95 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from automl.budget import Budget
from automl.train.datasets import load_dataset
from automl.train.splits import Dataset
from automl.train.dataset_sources import ToTensor
from automl.train.image_files import write_image_folder
from automl.train.loop import train
from automl.train.settings import TrainSettings
from automl.train.streaming import PREFETCH_FACTOR, STREAM_WORKERS
from side_by_side import SEED, add_model_options, describe, fresh_model, pick_device, speed_clock

GOAL = 0.95
CLASSES = 10


def run_automl(model: nn.Module, data: Dataset, settings: TrainSettings, steps: int, device: torch.device,
               by_hand: DataLoader) -> float:
    """Samples/s of automl's trainer on the streamed split (its own training clock)."""
    result = train(model, data, settings, Budget.parse(f"{steps}steps"), device=device, seed=SEED, clock=speed_clock)
    if result.steps != steps:
        raise RuntimeError(f"automl ran {result.steps} steps, expected {steps}")
    return steps * settings.batch_size / result.train_seconds


def run_by_hand(model: nn.Module, data: Dataset, settings: TrainSettings, steps: int, device: torch.device,
                by_hand: DataLoader) -> float:
    """Samples/s of the loop written by hand: DataLoader batches, copied and normalised on the device, a step."""
    shift = torch.tensor(data.mean, device=device)[:, None, None]
    scale = 1.0 / torch.tensor(data.std, device=device)[:, None, None]
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                          nesterov=settings.nesterov, weight_decay=settings.weight_decay)
    model.train()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    done = 0
    while done < steps:
        for x, y in by_hand:
            x = (x.to(device, non_blocking=True).float() - shift) * scale
            y = y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    sync()
    return steps * settings.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_options(parser, repeats=10, steps=20)
    parser.add_argument("--images", type=int, default=1200, help="32x32 PNG training images in the folder")
    args = parser.parse_args()
    device = pick_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        root = write_image_folder(Path(tmp), classes=CLASSES, train=args.images // CLASSES, test=0, size=(32, 32))
        data = load_dataset("imagefolder", root=root, loader="stream", device=device)
        from torchvision.datasets import ImageFolder

        by_hand = DataLoader(ImageFolder(str(root / "train"), transform=ToTensor()), batch_size=args.batch_size,
                             shuffle=True, drop_last=True, num_workers=STREAM_WORKERS,
                             pin_memory=device.type == "cuda", persistent_workers=True,
                             prefetch_factor=PREFETCH_FACTOR)
        settings = TrainSettings(batch_size=args.batch_size, augment=False, rungs=1)
        sides = {"automl": run_automl, "hand-written": run_by_hand}
        print(f"model {args.model} width {args.width:g}, batch {args.batch_size}, {args.steps} steps x "
              f"{args.repeats} repeats, {len(data.train)} streamed 32x32 PNG images, {STREAM_WORKERS} workers, "
              f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
        for name, run in sides.items():  # warm-up, untimed: workers started, caches filled
            run(fresh_model(args.model, args.width, data, device), data, settings, 5, device, by_hand)
        rates: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for _ in range(args.repeats):
            for name in order:  # A B, B A, ...: neither side always runs first
                model = fresh_model(args.model, args.width, data, device)
                rates[name].append(sides[name](model, data, settings, args.steps, device, by_hand))
            order.reverse()
            print(f"pair {len(rates['automl'])}: ratio {rates['automl'][-1] / rates['hand-written'][-1]:.3f}",
                  flush=True)

    for name in sides:
        print(describe(name, rates[name], "samples/s"))
    pairs = [a / b for a, b in zip(rates["automl"], rates["hand-written"])]
    print("per-pair ratios " + " ".join(f"{r:.3f}" for r in pairs))
    ratio = statistics.median(pairs)
    print(f"goal >= {GOAL} on CPU: {'met' if ratio >= GOAL else 'NOT met'}")
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
