"""Step throughput of one trial on 2 devices against 1, at the same global batch (``--gpus-per-trial 2``).

What it measures: optimizer steps per second of ``automl.train.loop.train`` (its own training clock, rank
0's), with no tricks, for one process training the whole global batch, and for two ranks of a
``TrialGroup`` each training half of it, gradients and buffers averaged by one all-reduce a step. On GPUs
each rank has its own GPU (nccl); with ``--device cpu`` the two ranks are gloo processes sharing the CPU's
cores (each gets half of the threads the single process has), so the CPU figure says what the
synchronisation costs, not what a second device buys.

Each side is a pool of long-lived processes (spawned once, data loaded once, one warm-up run untimed); the
timed runs alternate A B, B A, ... and the ratio is the median of the pairs' ratios (2 devices / 1).
Between runs the ranks wait on a pipe, not in a collective, so an idle side does not hold a GPU.

Run it::

    python benchmarks/multi_gpu.py --device cpu                    # CPU, gloo: a few minutes on 2 cores
    python benchmarks/multi_gpu.py --device cuda --model resnet9 --width 1 --batch-size 512 --steps 50

The last line is ``ratio=<steps/s on 2 devices / steps/s on 1>``: up to 2 on 2 GPUs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automl.budget import Budget  # noqa: E402
from automl.train.datasets import load_dataset  # noqa: E402
from automl.train.distributed import LOOPBACK, STORE_VAR, Ranks, TrialGroup, start_store  # noqa: E402
from automl.train.loop import train  # noqa: E402
from automl.train.settings import TrainSettings  # noqa: E402
from side_by_side import SEED, fresh_model, paired_ratios, pick_device, speed_clock  # noqa: E402


def rank_main(rank: int, world: int, port: int, args: argparse.Namespace, threads: int, conn) -> None:
    """One rank of a side: load the data, join the group, then train ``steps`` for every ``steps`` sent."""
    torch.set_num_threads(threads)
    device = torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")
    data = load_dataset("synthetic", shape=(3, 32, 32), n_train=args.n_train, n_val=256, n_test=10, device=device)
    group = None
    if world > 1:
        os.environ[STORE_VAR] = f"{LOOPBACK}:{port}"
        group = TrialGroup(Ranks(rank, world, rank), device)
    settings = TrainSettings(batch_size=args.batch_size, augment=False, rungs=1)
    while (steps := conn.recv()) is not None:
        model = fresh_model(args.model, args.width, data, device)
        result = train(model, data, settings, Budget(steps, "steps"), device=device, seed=SEED, group=group,
                       clock=speed_clock)
        if result.steps != steps:
            raise RuntimeError(f"rank {rank} ran {result.steps} steps, expected {steps}")
        conn.send(result.train_seconds)
    if group is not None:
        group.close()


class Side:
    """The processes of one side, each behind a pipe."""

    def __init__(self, world: int, args: argparse.Namespace, threads: int) -> None:
        context = mp.get_context("spawn")
        self.store = start_store(world) if world > 1 else None
        port = self.store.port if self.store is not None else 0
        self.pipes, self.processes = [], []
        for rank in range(world):
            mine, theirs = context.Pipe()
            process = context.Process(target=rank_main, args=(rank, world, port, args, threads, theirs))
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)

    def steps_per_second(self, steps: int) -> float:
        for pipe in self.pipes:
            pipe.send(steps)
        seconds = [pipe.recv() for pipe in self.pipes]
        return steps / seconds[0]

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for process in self.processes:
            process.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20", help="a built-in name, torchvision:NAME, timm:NAME, ...")
    parser.add_argument("--width", type=float, default=0.5, help="channel multiplier of the model")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch, the same on both sides")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each side, interleaved")
    parser.add_argument("--n-train", type=int, default=2048, help="synthetic 3x32x32 training images")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads of the one process; each of the two ranks gets half")
    args = parser.parse_args()
    args.device = pick_device(args.device).type
    if args.device == "cuda" and torch.cuda.device_count() < 2:
        raise SystemExit(f"needs 2 GPUs, {torch.cuda.device_count()} visible; run it with --device cpu")
    cores = args.threads
    sides = {"1 device": Side(1, args, cores), "2 devices": Side(2, args, max(1, cores // 2))}
    print(f"model {args.model} width {args.width:g}, global batch {args.batch_size}, {args.steps} steps x "
          f"{args.repeats} repeats, device {args.device}, torch {torch.__version__}, {cores} threads in all")
    try:
        for side in sides.values():
            side.steps_per_second(min(args.steps, 5))  # warm-up, untimed
        rates: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        for _ in range(args.repeats):
            for name in order:  # A B, B A, ...: neither side always runs first
                rates[name].append(sides[name].steps_per_second(args.steps))
            order.reverse()
    finally:
        for side in sides.values():
            side.close()
    pairs = paired_ratios(rates, "2 devices", "1 device", "steps/s")
    print(f"ratio={statistics.median(pairs):.3f}")


if __name__ == "__main__":
    main()
