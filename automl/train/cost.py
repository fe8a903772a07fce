"""Inference cost measured: a trained run's latency per 1000 images on its device, and its FLOPs per image.

Both measure the prediction the trial's value is the error of: the first trick's ``predict`` that does not
abstain (an ensemble's M forward passes), else the model's own. They run after training, on the clocks of
neither training nor evaluation, so they never spend the trial's budget.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from automl.train.splits import Split
from automl.run import Run

LATENCY_BATCH = 256
"""Images per timed prediction at most (fewer when the validation split is smaller)."""
FLOP_BATCH = 4
"""Images per counted prediction: FLOPs per image do not depend on the batch, and counting is slow."""
REPEATS = {"cuda": (3, 10)}
"""(warm-up predictions, timed predictions) by device type; the median of the timed ones is kept."""
CPU_REPEATS = (1, 3)
"""The same elsewhere: few, as a CPU trial is small and its time is everyone's."""


@dataclass(frozen=True)
class InferenceCost:
    """What one prediction of a trained run costs."""

    ms_per_1000: float
    """Milliseconds to predict 1000 images on ``device``: the median timed batch, scaled."""
    flops_per_image: float
    """Floating-point operations per image, as ``torch.utils.flop_counter`` counts them (2 per multiply-add)."""
    device: str


def predict(run: Run, x: torch.Tensor, predictors: Sequence[Callable]) -> torch.Tensor:
    """The scores the trial is judged on for ``x``: a trick's prediction, else the model's (no grad, autocast)."""
    with torch.no_grad(), run.amp():
        for predictor in predictors:
            scores = predictor(run, x)
            if scores is not None:
                return scores
        return run.model(x)


def measure_inference(run: Run, split: Split, predictors: Sequence[Callable] = ()) -> InferenceCost:
    """Time and count ``predict`` on the first images of ``split`` (the model in eval mode, then as it was)."""
    if len(split) == 0:
        raise ValueError("no images to measure inference on: the split is empty")
    was_training = run.model.training
    run.model.eval()
    try:
        seconds, images = _median_seconds(run, split.head(LATENCY_BATCH), predictors)
        flops = _flops(run, split.head(FLOP_BATCH), predictors)
    finally:
        run.model.train(was_training)
    return InferenceCost(ms_per_1000=seconds / images * 1e6, flops_per_image=flops, device=str(run.device))


def _median_seconds(run: Run, x: torch.Tensor, predictors: Sequence[Callable]) -> tuple[float, int]:
    warmup, repeats = REPEATS.get(run.device.type, CPU_REPEATS)
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):  # kernels chosen, caches filled, lazy allocations done
        predict(run, x, predictors)
    times = []
    for _ in range(repeats):
        sync()
        started = time.perf_counter()
        predict(run, x, predictors)
        sync()  # the work queued on the device has finished, not only been launched
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(x)


def _flops(run: Run, x: torch.Tensor, predictors: Sequence[Callable]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        predict(run, x, predictors)
    return counter.get_total_flops() / len(x)
