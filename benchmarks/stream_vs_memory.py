"""automl's streaming loader against its in-memory one, on the same image folder, model and batch size.

What it measures: training throughput (samples per second of training steps) of
``automl.train.loop.train`` on an ``imagefolder`` data set read with ``loader = "stream"`` (DataLoader
workers decoding the PNG files, pinned memory, one batch copied ahead on a GPU), divided by that of the
same folder with ``loader = "memory"`` (decoded once into device tensors, before the timing; the decode
time is printed apart, as a study charges it to no trial). Augmentation is on for both, on whole batches
on the device, so the difference is where the images come from.

The folder is CIFAR-10's training split written out as PNG files when ``--cifar-root`` names a folder
holding torchvision's CIFAR-10 (``cifar-10-batches-py``; nothing is downloaded), else a synthetic folder of
32x32 PNG images. The two sides run side by side in one process (A B, B A, ...); the ratio is the median
of the pairs' ratios.

Run it::

    python benchmarks/stream_vs_memory.py --device cuda --model resnet9 --width 1 --batch-size 512 \\
        --cifar-root ~/data --steps 50               # the GPU figure: CIFAR-10 as 50,000 PNG files
    python benchmarks/stream_vs_memory.py --images 640 --steps 10 --repeats 3   # a smoke run on a CPU

The last line is ``ratio=<stream / memory>``. On a GPU the question is whether the workers keep up with
the device; on a 2-core CPU the workers take cores from training, so the CPU figure says little.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from automl.budget import Budget
from automl.train.datasets import load_dataset
from automl.train.splits import Dataset
from automl.train.image_files import write_image_folder
from automl.train.loop import train
from automl.train.settings import TrainSettings
from automl.train.streaming import STREAM_WORKERS
from side_by_side import SEED, add_model_options, describe, fresh_model, pick_device, speed_clock

CLASSES = 10


def write_cifar_pngs(cifar_root: Path, folder: Path, images: int | None) -> Path:
    """CIFAR-10's training split (its first ``images``, or all) as ``folder/train/CLASS/N.png``."""
    from PIL import Image
    from torchvision.datasets import CIFAR10

    cifar = CIFAR10(str(cifar_root), train=True, download=False)
    count = len(cifar.targets) if images is None else min(images, len(cifar.targets))
    for name in cifar.classes:
        (folder / "train" / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):  # setup, not timed
        Image.fromarray(cifar.data[i]).save(folder / "train" / cifar.classes[cifar.targets[i]] / f"{i}.png")
    return folder


def samples_per_second(data: Dataset, args: argparse.Namespace, device: torch.device) -> float:
    settings = TrainSettings(batch_size=args.batch_size, rungs=1)  # augmentation on: crop and flip
    model = fresh_model(args.model, args.width, data, device)
    result = train(model, data, settings, Budget.parse(f"{args.steps}steps"), device=device, seed=SEED,
                   clock=speed_clock)
    if result.steps != args.steps:
        raise RuntimeError(f"automl ran {result.steps} steps, expected {args.steps}")
    return args.steps * args.batch_size / result.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_options(parser, repeats=5, steps=20)
    parser.add_argument("--cifar-root", type=Path, help="a folder holding torchvision's CIFAR-10 (not downloaded)")
    parser.add_argument("--images", type=int, help="training images to write (default: all of CIFAR-10's, "
                                                    "or 1200 synthetic ones without --cifar-root)")
    args = parser.parse_args()
    device = pick_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        if args.cifar_root is not None:
            root, what = write_cifar_pngs(args.cifar_root, Path(tmp), args.images), "CIFAR-10"
        else:
            per_class = (args.images or 1200) // CLASSES
            root, what = write_image_folder(Path(tmp), classes=CLASSES, train=per_class, test=0,
                                            size=(32, 32)), "synthetic"
        sides = {name: load_dataset("imagefolder", root=root, loader=name, device=device)
                 for name in ("stream", "memory")}
        print(f"model {args.model} width {args.width:g}, batch {args.batch_size}, {args.steps} steps x "
              f"{args.repeats} repeats, {len(sides['memory'].train)} {what} 32x32 PNG training images, "
              f"{STREAM_WORKERS} workers, device {device}, torch {torch.__version__}")
        print(f"memory: decoded once in {sides['memory'].decode_seconds:.1f} s (charged to no trial)")
        for data in sides.values():  # warm-up, untimed: workers started, kernels chosen
            samples_per_second(data, argparse.Namespace(**{**vars(args), "steps": 5}), device)
        rates: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for _ in range(args.repeats):
            for name in order:  # A B, B A, ...: neither side always runs first
                rates[name].append(samples_per_second(sides[name], args, device))
            order.reverse()
            print(f"pair {len(rates['stream'])}: ratio {rates['stream'][-1] / rates['memory'][-1]:.3f}", flush=True)

    for name in sides:
        print(describe(name, rates[name], "samples/s"))
    pairs = [a / b for a, b in zip(rates["stream"], rates["memory"])]
    print("per-pair ratios " + " ".join(f"{r:.3f}" for r in pairs))
    print(f"ratio={statistics.median(pairs):.3f}")


if __name__ == "__main__":
    main()
