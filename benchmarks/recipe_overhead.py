"""The cost of a recipe in your own loop (``Recipe.attach``) against the same recipe in automl's loop.

What it measures: training throughput (steps per second) of a hand-written PyTorch loop that calls a bound
recipe's hooks (``automl.api.binding.Attached``: before_step, the criterion, after_backward, after_step), divided
by that of ``automl.train.loop.train`` with the same tricks (cosine, label smoothing, gradient clipping, EMA), the
same model and seeded init, the same in-memory batches and the same number of steps. Both do the same training to
the bit (``tests/api/test_binding.py``), so the difference is the binding's per-step bookkeeping: the progress it
computes from steps and passes, its checks.

The two run side by side in one process: a warm-up run of each outside the timing, then pairs of runs in
alternating order, so that drift of a noisy machine hits both alike; the ratio is the median of the pairs'.

Run it::

    python benchmarks/recipe_overhead.py                     # about a minute on a 2-core CPU
    python benchmarks/recipe_overhead.py --device cuda --steps 300

The last line is ``ratio=<your loop / automl's loop>`` (steps per second; higher is better). Goal: at least 0.97.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from automl.api.binding import Attached
from automl.budget import Budget
from automl.host import get_host
from automl.space import study_order
from automl.testing import tiny_builder, tiny_data, tiny_settings
from automl.train.loader import Loader
from automl.train.loop import build_optimizer, train
from automl.trick import Trick

TRICKS = ["cosine", "label_smoothing", "grad_clip", "ema"]


def tricks():
    host = get_host()
    return study_order([host.tricks[name].cls() for name in TRICKS])


def automl_loop(data, settings, steps: int, device: str) -> float:
    torch.manual_seed(0)
    model = tiny_builder(data, width=1.0)()
    stamp = _Stamp()
    # Wall-clock from the first step to the last, as your loop is timed: not the set-up, nor the evaluation after.
    train(model, data, settings, Budget.parse(f"{steps}steps"), tricks=[*tricks(), stamp], device=device,
          on_start=stamp.start)
    return steps / stamp.seconds


class _Stamp(Trick):
    """Not a trick: the wall-clock time from the loop's first step to its last (``on_end`` comes right after)."""

    name = "stamp"
    order = 1 << 30

    def start(self, run) -> None:
        self.started = time.perf_counter()

    def on_end(self, run) -> None:
        _synchronize(run.device)
        self.seconds = time.perf_counter() - self.started


def your_loop(data, settings, steps: int, device: str) -> float:
    torch.manual_seed(0)
    model = tiny_builder(data, width=1.0)().to(device)
    optimizer = build_optimizer(settings, model.parameters())
    loader = Loader(data.train, settings.batch_size, seed=0)
    bound = Attached(tricks(), model, optimizer, budget=f"{steps}steps", base_lr=settings.lr,
                     batch_size=settings.batch_size, steps_per_epoch=len(loader), train_data=data.train)
    started = time.perf_counter()  # the steps, as automl's training clock times them
    while not bound.done:
        for x, y in loader:
            if bound.done:
                break
            x, y = bound.before_step(x, y)
            loss = bound.criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            bound.after_backward()
            bound.optimizer.step()
            bound.after_step(loss)
    _synchronize(device)
    seconds = time.perf_counter() - started
    bound.end()
    return steps / seconds


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = tiny_data(shape=(3, 16, 16), n_train=2048, n_val=256, n_test=64, device=args.device)
    settings = tiny_settings(batch_size=64, lr=0.05)
    automl_loop(data, settings, 10, args.device)  # warm-up of each, outside the timing
    your_loop(data, settings, 10, args.device)
    ratios, ours, theirs = [], [], []
    for pair in range(args.pairs):
        order = [your_loop, automl_loop] if pair % 2 else [automl_loop, your_loop]
        speeds = {f.__name__: f(data, settings, args.steps, args.device) for f in order}
        ours.append(speeds["your_loop"])
        theirs.append(speeds["automl_loop"])
        ratios.append(speeds["your_loop"] / speeds["automl_loop"])
        print(f"pair {pair}: your loop {ours[-1]:.1f} steps/s, automl's {theirs[-1]:.1f} steps/s, "
              f"ratio {ratios[-1]:.3f}")
    print(f"medians: your loop {statistics.median(ours):.1f} steps/s, automl's {statistics.median(theirs):.1f}; "
          f"tricks {', '.join(TRICKS)}, {args.steps} steps, device {args.device}")
    print(f"ratio={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
