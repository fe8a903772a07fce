"""The overhead of automl's training loop over a minimal hand-written PyTorch loop.

What it measures: training throughput (samples per second of training steps) of
``automl.train.loop.train`` with no tricks, divided by that of the loop a person
would write by hand, on the same model (same architecture, same seeded init, a
fresh copy every run), the same in-memory data, the same batch size, the same
SGD settings (momentum, Nesterov, weight decay) and the same number of steps.
Augmentation is off on both sides, so the difference is the loop's own work:
the budget and progress bookkeeping, the hook dispatch, the LR update, the loss
accumulation and NaN checks. Both sides shuffle with one ``randperm`` per epoch
and index whole batches out of the tensors already in memory.

The two run side by side in one process: a warm-up run of each outside the
timing, then pairs of runs, A B, B A, A B, ... so that drift of a noisy machine
hits both alike and neither always runs first; the ratio is the median of the
pairs' ratios (the ratio of the two medians is printed too). Many short
repetitions are more robust to bursts of load from other processes than a few
long ones: raise --repeats rather than --steps when the spread is large.

Run it::

    python benchmarks/trainer_overhead.py                 # defaults, 1-2 minutes on a 2-core CPU
    python benchmarks/trainer_overhead.py --device cuda --steps 300
    python benchmarks/trainer_overhead.py --device cuda --steps 300 --fast   # bf16 autocast + channels_last

``--fast`` trains both sides as airbench does on a GPU: bf16 autocast and ``channels_last`` weights and
batches (automl through its ``mixed_precision`` trick, the hand-written loop inline), so the comparison
is against a loop that is itself fast, and one that never synchronises inside an epoch.

The last line is ``ratio=<automl / hand-written>``. Goal: at least 0.97 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from automl.budget import Budget
from automl.train.datasets import load_dataset
from automl.train.splits import Dataset
from automl.train.loop import train
from automl.train.settings import TrainSettings
from automl_plugins.mixed_precision import MixedPrecision
from side_by_side import SEED, add_model_options, fresh_model, paired_ratios, pick_device, speed_clock

GOAL = 0.97


def run_automl(model: nn.Module, data: Dataset, settings: TrainSettings, steps: int, device: torch.device,
               fast: bool = False) -> float:
    """Samples/s of automl's trainer.

    Timed: ``result.train_seconds``, automl's training clock (``speed_clock``: the wall clock on the CPU, as
    the hand-written side is timed; CUDA events on a GPU), which runs from just before the first batch is
    drawn to just after the last step (and its final NaN check). Not timed: building the loader and
    optimizer before it, and the one evaluation on the val split after it (``rungs=1``, so there is no other).
    """
    tricks = [MixedPrecision(dtype="bf16", channels_last=True)] if fast else []
    result = train(model, data, settings, Budget.parse(f"{steps}steps"), tricks=tricks, device=device, seed=SEED,
                   clock=speed_clock)
    if result.steps != steps:
        raise RuntimeError(f"automl ran {result.steps} steps, expected {steps}")
    return steps * settings.batch_size / result.train_seconds


def run_by_hand(model: nn.Module, data: Dataset, settings: TrainSettings, steps: int, device: torch.device,
                fast: bool = False) -> float:
    """Samples/s of the minimal loop: a randperm per epoch, slice, index, step.

    Timed: from just before the first permutation to just after the last
    optimizer step, with the device synchronised at both ends. Not timed:
    building the optimizer.
    """
    x_all, y_all = data.train.x, data.train.y
    bs = settings.batch_size
    per_epoch = len(y_all) // bs  # full batches only, as automl's loader (drop_last)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                          nesterov=settings.nesterov, weight_decay=settings.weight_decay)
    gen = torch.Generator(device=device).manual_seed(SEED)
    layout = torch.channels_last if fast else torch.contiguous_format
    model.to(memory_format=layout).train()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for step in range(steps):
        i = step % per_epoch
        if i == 0:
            perm = torch.randperm(len(y_all), generator=gen, device=device)
        idx = perm[i * bs:(i + 1) * bs]
        x, y = x_all[idx].contiguous(memory_format=layout), y_all[idx]
        with torch.autocast(device.type, torch.bfloat16, enabled=fast):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    return steps * bs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_options(parser, repeats=20, steps=20)
    parser.add_argument("--n-train", type=int, default=1024, help="synthetic 3x32x32 training images")
    parser.add_argument("--fast", action="store_true", help="bf16 autocast and channels_last on both sides")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.batch_size > args.n_train:
        parser.error("need --steps >= 1, --repeats >= 1 and --batch-size <= --n-train")

    device = pick_device(args.device)
    # A small val split: automl's one evaluation is untimed, but it still costs wall time.
    data = load_dataset("synthetic", shape=(3, 32, 32), n_train=args.n_train, n_val=256, n_test=10,
                        device=device)
    settings = TrainSettings(batch_size=args.batch_size, augment=False, rungs=1)
    sides = {"automl": run_automl, "hand-written": run_by_hand}

    print(f"model {args.model} width {args.width:g}, batch {args.batch_size}, {args.steps} steps x "
          f"{args.repeats} repeats, {args.n_train} synthetic 3x32x32 images, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads{', bf16 + channels_last' if args.fast else ''}")
    # Warm-up, untimed (allocator, kernel and oneDNN caches); it also checks that both
    # sides do the same work: same init, same batches, same updates, so the same weights.
    warmed = {name: fresh_model(args.model, args.width, data, device) for name in sides}
    for name, run in sides.items():
        run(warmed[name], data, settings, min(args.steps, 10), device, args.fast)
    a, b = (warmed[name].state_dict() for name in sides)
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    print(f"warm-up: largest difference between the two sides' final weights {diff:.2g}")
    if diff > 1e-3:
        raise SystemExit("the two loops do not train alike; the comparison would not be fair")

    rates: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for _ in range(args.repeats):
        for name in order:  # A B, B A, A B, ...: neither side always runs first
            model = fresh_model(args.model, args.width, data, device)
            rates[name].append(sides[name](model, data, settings, args.steps, device, args.fast))
        order.reverse()

    pairs = paired_ratios(rates, "automl", "hand-written", "samples/s")
    print(f"ratio of the medians {statistics.median(rates['automl']) / statistics.median(rates['hand-written']):.3f}")
    # The two runs of a pair are back to back, so they share the machine's drift (load from
    # other processes, clocks): the median of the pairs' ratios is the steadiest estimate.
    ratio = statistics.median(pairs)
    print(f"goal >= {GOAL} on CPU: {'met' if ratio >= GOAL else 'NOT met'}")
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
