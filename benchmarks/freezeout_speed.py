"""The training time FreezeOut saves: one run's time per epoch without it, divided by with it.

What it measures: ``result.train_seconds / epochs`` of whole runs of
``automl.train.loop.train``, one side with no tricks, the other with FreezeOut
(t0 = 0.5 pre-cubed, cubic schedule, scaled LRs: the first layer freezes at
12.5% of the run, the classifier trains to the end). Both sides train the same
model (same architecture, same seeded init, a fresh copy every run) on the same
in-memory synthetic 3x32x32 data, with the same batch size, seed, SGD settings
and the same budget in epochs, so they take the same number of steps over the
same batches; only what FreezeOut changes differs: the per-layer LRs, and the
frozen layers' missing backward and optimizer work. A CIFAR ResNet is the
paper's setting in which backward dominates (Brock et al. 2017 report ~20% on
ResNets on a GPU); on a CPU the backward share is larger still.

Timed, on each side: automl's own training clock, from just before the first
batch is drawn to just after the last step. Not timed: building the model,
loader and optimizer, FreezeOut's setup (one regrouping of the optimizer), and
the one evaluation on the val split after the run (``rungs=1``).

The two run side by side in one process: a warm-up run of each outside the
timing (allocator and oneDNN caches, and FreezeOut's no-grad path), then
repetitions interleaved A, B, A, B, ... so that drift of a noisy machine hits
both alike; the ratio is of the two medians.

Run it::

    python benchmarks/freezeout_speed.py                   # defaults, about 1-2 minutes on a 2-core CPU
    python benchmarks/freezeout_speed.py --model resnet32 --epochs 5
    python benchmarks/freezeout_speed.py --device cuda --n-train 8192 --batch-size 128
    python benchmarks/freezeout_speed.py --model torchvision:resnet18 --n-train 256 --epochs 2 --repeats 3

``--model`` takes any ``[task] model``: a built-in name (scaled by ``--width``), ``torchvision:NAME``,
``timm:NAME`` or ``package.module:callable`` (built at their own size; ``--width`` is not used).

The last line is ``ratio=<time without / time with>``. Goal: at least 1.15 on CPU.
"""

from __future__ import annotations

import argparse

import torch

from automl.budget import Budget
from automl.train.datasets import load_dataset
from automl.train.splits import Dataset
from automl.train.loop import TrainResult, train
from automl.train.models import build_model
from automl.train.settings import TrainSettings
from side_by_side import SEED, add_run_options, describe, fresh_model, pick_device, print_ratio, speed_clock
from automl_plugins.freezeout import FreezeOut

GOAL = 1.15
T0, SCHEDULE, SCALE_LR = 0.5, "cubic", True


def run_side(freezeout: bool, args: argparse.Namespace, data: Dataset, settings: TrainSettings,
             device: torch.device, epochs: float) -> TrainResult:
    """One whole run of ``epochs`` through automl's trainer, with or without FreezeOut."""
    tricks = [FreezeOut(t0=T0, schedule=SCHEDULE, scale_lr=SCALE_LR)] if freezeout else []
    if ":" in args.model:  # a foreign model: its own size, the same seeded init on every call
        torch.manual_seed(SEED)
        model = build_model(args.model, in_channels=data.input_shape[0], num_classes=data.num_classes).to(device)
    else:
        model = fresh_model(args.model, args.width, data, device)
    return train(model, data, settings, Budget.parse(f"{epochs:g}ep"), tricks=tricks, device=device, seed=SEED,
                 clock=speed_clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser)
    args = parser.parse_args()
    if args.epochs <= 0 or args.repeats < 1 or args.batch_size > args.n_train:
        parser.error("need --epochs > 0, --repeats >= 1 and --batch-size <= --n-train")

    device = pick_device(args.device)
    # A small val split: the one evaluation per run is untimed, but it still costs wall time.
    data = load_dataset("synthetic", shape=(3, 32, 32), n_train=args.n_train, n_val=256, n_test=10,
                        device=device)
    settings = TrainSettings(batch_size=args.batch_size, augment=False, rungs=1)
    sides = {"without": False, "with FreezeOut": True}

    print(f"model {args.model} width {args.width:g}, batch {args.batch_size}, {args.epochs:g} epochs x "
          f"{args.repeats} repeats, {args.n_train} synthetic 3x32x32 images, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    # Warm-up, untimed; a whole epoch, so that FreezeOut's frozen paths are warm too.
    for freezeout in sides.values():
        warm = run_side(freezeout, args, data, settings, device, epochs=1)
    times = warm.attrs["freezeout.freeze_times"]
    print(f"FreezeOut t0={T0} {SCHEDULE} scale_lr={SCALE_LR}: {len(times)} layers freeze at progress "
          + " ".join(f"{t:.3f}" for t in times))

    per_epoch: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, TrainResult] = {}
    for _ in range(args.repeats):
        for name, freezeout in sides.items():  # A, B, A, B, ...
            result = run_side(freezeout, args, data, settings, device, args.epochs)
            per_epoch[name].append(result.train_seconds / result.epochs)
            results[name] = result
    steps = {name: r.steps for name, r in results.items()}
    if len(set(steps.values())) != 1:
        raise SystemExit(f"the two sides took different numbers of steps {steps}; the comparison would not be fair")

    for name in sides:
        print(describe(name, per_epoch[name], "s/epoch"))
    last = results["with FreezeOut"]
    print(f"steps per run {last.steps}; FreezeOut froze layers at steps {last.attrs['freezeout.frozen_at_step']}")
    print("final val error (synthetic data, for information): "
          + ", ".join(f"{name} {r.val_error:.3f}" for name, r in results.items()))
    print_ratio(per_epoch["without"], per_epoch["with FreezeOut"], GOAL)


if __name__ == "__main__":
    main()
