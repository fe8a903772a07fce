"""What the side-by-side benchmarks share: the device, a fresh seeded model, and a summary line."""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from automl.clocks import Clock, clock_for, wall_clock
from automl.testing import tiny_model
from automl.train.splits import Dataset

SEED = 0


def add_model_options(parser: argparse.ArgumentParser, repeats: int, steps: int | None = None) -> None:
    """The options every side-by-side benchmark takes: model, width, batch, repeats, device (and ``--steps``
    per run, with its default, when given)."""
    parser.add_argument("--model", default="resnet20", help="a built-in name, torchvision:NAME, timm:NAME, ...")
    parser.add_argument("--width", type=float, default=0.5, help="channel multiplier of the model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs of each side, interleaved")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    if steps is not None:
        parser.add_argument("--steps", type=int, default=steps, help="training steps per run, the same on both sides")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a benchmark of whole runs on synthetic images: the model's, a budget, the images."""
    add_model_options(parser, repeats=7)
    parser.add_argument("--epochs", type=float, default=4, help="budget of every run, the same on both sides")
    parser.add_argument("--n-train", type=int, default=1024, help="synthetic 3x32x32 training images")


def print_ratio(without: list[float], with_: list[float], goal: float) -> float:
    """Print the per-pair ratios and ``ratio=`` (median of ``without`` / median of ``with_``) against ``goal``."""
    pairs = [a / b for a, b in zip(without, with_)]
    print("per-pair ratios " + " ".join(f"{r:.3f}" for r in pairs))
    ratio = statistics.median(without) / statistics.median(with_)
    print(f"goal >= {goal} on CPU: {'met' if ratio >= goal else 'NOT met'}")
    print(f"ratio={ratio:.3f}")
    return ratio


def speed_clock(device: torch.device | str) -> Clock:
    """The clock automl's runs are timed with in a benchmark of speed (``train(..., clock=speed_clock)``): the
    wall clock on the CPU, as a hand-written loop is timed, where automl's own clock counts CPU time per thread
    (fair to a budget on a busy machine, but another measure than seconds of the wall); automl's own clock on
    CUDA, whose events time the device's work from the first step to the last."""
    return wall_clock() if torch.device(device).type == "cpu" else clock_for(device)


def pick_device(choice: str) -> torch.device:
    """``auto`` is the GPU when there is one."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def fresh_model(name: str, width: float, data: Dataset, device: torch.device) -> nn.Module:
    """The same initial weights on every call: the init is drawn under a fixed seed."""
    return tiny_model(data, seed=SEED, model=name, width=width).to(device)


def describe(name: str, values: list[float], unit: str, width: int = 16) -> str:
    """Median, range and relative spread of one side's repetitions."""
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med
    return (f"{name:<{width}} median {med:9.3f} {unit}   min {min(values):9.3f}   max {max(values):9.3f}"
            f"   spread (max-min)/median {spread:6.1%}")


def paired_ratios(rates: dict[str, list[float]], top: str, bottom: str, unit: str) -> list[float]:
    """Print each side's repetitions and the ratio ``top / bottom`` of every pair of runs; those ratios."""
    for name in rates:
        print(describe(name, rates[name], unit))
    pairs = [a / b for a, b in zip(rates[top], rates[bottom])]
    print("per-pair ratios " + " ".join(f"{r:.3f}" for r in pairs))
    return pairs
