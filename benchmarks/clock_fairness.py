"""Whether a budget in seconds buys the same steps on a busy machine as on an idle one (issue 22).

What it measures: the steps one training run (``automl.train.loop.train``, no tricks) takes inside one budget of
device-seconds, run alone, then beside a second process that trains the same model on the same number of threads
and so keeps the same cores busy. The budget is about ``--steps`` steps' worth when alone: calibrated first, by a
run of ``--calibration`` steps on the same clock. On the CPU, automl's clock is the process's CPU time per thread
it may use (``automl.clocks.cpu_clock``): a run that gets half the cycles a second should take about as many
steps as alone, only in twice the wall time. With ``--wall`` the same is done with the wall clock, the old
measure, for contrast: there the busy run buys about half the steps.

Runs go alone, busy, alone, busy, ... (``--repeats`` pairs), each busy run with a fresh second process, which has
finished a run of its own (its warm-up) before the measured run starts. The machine's other load is not under
the benchmark's control: where other jobs share the cores, "alone" means beside them only.

OpenMP threads that spin while they wait for one another (libgomp's default wait policy) burn CPU time when a
busy machine deschedules one of them, and the CPU clock counts it: with two threads a process on a loaded 2-core
machine, a step costs several times the CPU time it costs alone. Run both processes with ``OMP_WAIT_POLICY=passive``
(inherited by the second process), or on one thread each (``--threads 1``), to measure the clock rather than the
spinning.

Run it::

    python benchmarks/clock_fairness.py                    # 300 steps' worth, 3 pairs; a few minutes on 2 cores
    OMP_WAIT_POLICY=passive python benchmarks/clock_fairness.py --wall --repeats 1 --steps 60 --calibration 15

The last line is ``ratio=<steps busy / steps alone>`` (medians) on automl's own clock. Goal: at least 0.85.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

from automl.budget import Budget
from automl.clocks import Clock, clock_for, cpu_threads, wall_clock
from automl.train.datasets import load_dataset
from automl.train.loop import train
from automl.train.settings import TrainSettings
from automl.train.splits import Dataset
from side_by_side import SEED, add_model_options, fresh_model, pick_device

GOAL = 0.85
ClockMaker = Callable[[torch.device], Clock]
CLOCKS: dict[str, ClockMaker] = {"automl": clock_for, "wall": lambda device: wall_clock()}


def run(args: argparse.Namespace, data: Dataset, budget: Budget, clock: ClockMaker) -> tuple[int, float, float]:
    """(steps, clock seconds, wall seconds) of one run of ``budget`` on ``clock``."""
    settings = TrainSettings(batch_size=args.batch_size, augment=False, rungs=1)
    model = fresh_model(args.model, args.width, data, data.train.device)
    started = time.perf_counter()
    result = train(model, data, settings, budget, device=data.train.device, seed=SEED, clock=clock)
    return result.steps, result.train_seconds, time.perf_counter() - started


def burner(args: argparse.Namespace) -> subprocess.Popen:
    """A second process training the same model on as many threads, started, and warm once this returns."""
    command = [sys.executable, __file__, "--burn", "--model", args.model, "--width", str(args.width),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--device", args.device,
               "--n-train", str(args.n_train)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        process.kill()
        raise SystemExit("the second process did not start")
    return process


def burn(args: argparse.Namespace, data: Dataset) -> None:
    """The second process: train run after run until stopped, saying ``ready`` after the first."""
    budget = Budget.of_steps(args.calibration)
    run(args, data, budget, clock_for)
    print("ready", flush=True)
    while True:
        run(args, data, budget, clock_for)


def compare(args: argparse.Namespace, data: Dataset, name: str) -> float:
    """Calibrate a budget on clock ``name``, run the pairs, print them; the ratio of the medians."""
    clock = CLOCKS[name]
    _, seconds, _ = run(args, data, Budget.of_steps(args.calibration), clock)
    budget = Budget(args.steps * seconds / args.calibration, "seconds")
    print(f"[{name} clock] {seconds / args.calibration * 1000:.1f} ms a step alone: budget {budget.amount:.2f}s")
    steps: dict[str, list[int]] = {"alone": [], "busy": []}
    for _ in range(args.repeats):
        for side in steps:
            second = burner(args) if side == "busy" else None
            try:
                taken, spent, wall = run(args, data, budget, clock)
            finally:
                if second is not None:
                    second.terminate()
                    second.wait()
            steps[side].append(taken)
            print(f"[{name} clock] {side:<5}  {taken:5d} steps  {spent:7.2f} clock s  {wall:7.2f} wall s", flush=True)
    alone, busy = statistics.median(steps["alone"]), statistics.median(steps["busy"])
    print(f"[{name} clock] steps alone {alone:g}, steps busy {busy:g}, ratio {busy / alone:.3f}")
    return busy / alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_options(parser, repeats=3, steps=300)
    parser.add_argument("--n-train", type=int, default=1024, help="synthetic 3x32x32 training images")
    parser.add_argument("--calibration", type=int, default=30, help="steps of the run that sizes the budget")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads of each process")
    parser.add_argument("--wall", action="store_true", help="also run with the wall clock, for contrast")
    parser.add_argument("--burn", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    data = load_dataset("synthetic", shape=(3, 32, 32), n_train=args.n_train, n_val=64, n_test=10, device=device)
    if args.burn:
        burn(args, data)
        return
    print(f"model {args.model} width {args.width:g}, batch {args.batch_size}, about {args.steps} steps a budget, "
          f"{args.repeats} pairs, device {device}, torch {torch.__version__}, {args.threads} threads "
          f"({cpu_threads()} counted by the CPU clock)")
    run(args, data, Budget.of_steps(min(10, args.calibration)), clock_for)  # warm-up: allocator, oneDNN caches
    if args.wall:
        compare(args, data, "wall")
    ratio = compare(args, data, "automl")
    print(f"goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'}")
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
