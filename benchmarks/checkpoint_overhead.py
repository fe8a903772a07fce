"""What checkpoints inside a trial cost: a trial's time without them, divided by its time with one every 10%.

What it measures: the wall time of whole runs of ``automl.train.loop.train`` on the same model, data, seed
and budget in epochs (so the same steps over the same batches), one side without checkpoints, the other
saving one after every tenth of the budget (``[study] checkpoint_every = 0.1``, nine saves) through the
real path a study takes: ``automl.study.resume.TrialCheckpoints`` packs each into a few flat tensors on the
training thread, then, on a thread of its own, writes it to a file-system artifact store, records it on a trial
in a SQLite study, and removes the one it replaces. It also prints how long the training thread stopped a save. Timed on each side: the
whole ``train`` call, the saves included, and the one evaluation after the run (``rungs=1``) on both.

The two run side by side in one process: a warm-up run of each outside the timing, then repetitions
interleaved A, B, A, B, ... so that drift of a noisy machine hits both alike; the ratio is of the medians.

Run it::

    python benchmarks/checkpoint_overhead.py                  # defaults, about 2-3 minutes on a 2-core CPU
    python benchmarks/checkpoint_overhead.py --device cuda --model resnet9 --n-train 8192 --batch-size 256

The last line is ``ratio=<time without / time with>``. Goal: at least 0.97 on CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

from automl.budget import Budget
from automl.storage.artifacts import artifact_store
from automl.study.resume import TrialCheckpoints
from automl.train.checkpoints import Checkpointing, Every
from automl.train.datasets import load_dataset
from automl.train.splits import Dataset
from automl.train.loop import train
from automl.train.settings import TrainSettings
from side_by_side import SEED, add_run_options, describe, fresh_model, pick_device, print_ratio

GOAL = 0.97
EVERY = 0.1


def run_side(checkpoints: TrialCheckpoints | None, args: argparse.Namespace, data: Dataset,
             settings: TrainSettings, device: torch.device, epochs: float) -> tuple[float, int, float]:
    """Seconds of one whole run, the checkpoints it saved, and the seconds its training thread spent saving."""
    saved = []
    checkpointing = None
    if checkpoints is not None:
        def save(state: dict) -> None:
            checkpoints.save(state)
            saved.append(state["run"]["step"])

        checkpointing = Checkpointing(save=save, flush=checkpoints.flush, every=Every(fraction=EVERY))
    model = fresh_model(args.model, args.width, data, device)
    started = time.perf_counter()
    train(model, data, settings, Budget.parse(f"{epochs:g}ep"), device=device, seed=SEED,
          checkpointing=checkpointing)
    seconds = time.perf_counter() - started
    if checkpoints is not None:
        checkpoints.end()
    return seconds, len(saved), 0.0 if checkpointing is None else checkpointing.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_options(parser)
    args = parser.parse_args()
    device = pick_device(args.device)
    data = load_dataset("synthetic", shape=(3, 32, 32), n_train=args.n_train, n_val=256, n_test=10, device=device)
    settings = TrainSettings(batch_size=args.batch_size, augment=False, rungs=1)
    print(f"model {args.model} width {args.width:g}, batch {args.batch_size}, {args.epochs:g} epochs x "
          f"{args.repeats} repeats, {args.n_train} synthetic 3x32x32 images, device {device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; checkpoint every {EVERY:g} of the budget")
    with tempfile.TemporaryDirectory() as tmp:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(storage=f"sqlite:///{Path(tmp) / 'bench.db'}")
        checkpoints = TrialCheckpoints(study.ask(), artifact_store(Path(tmp) / "artifacts"))
        sides = {"without": None, "with checkpoints": checkpoints}
        for side in sides.values():  # warm-up, untimed
            run_side(side, args, data, settings, device, epochs=1)
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        blocked: list[float] = []
        for _ in range(args.repeats):
            for name, side in sides.items():  # A, B, A, B, ...
                spent, saves, saving = run_side(side, args, data, settings, device, args.epochs)
                seconds[name].append(spent)
            blocked.append(saving / saves)
    for name in sides:
        print(describe(name, seconds[name], "s/run", width=18))
    print(f"checkpoints saved per run: {saves}; the training thread stopped {statistics.median(blocked) * 1000:.1f} ms "
          "a save (median), the rest of each save written in the background")
    print_ratio(seconds["without"], seconds["with checkpoints"], GOAL)


if __name__ == "__main__":
    main()
