"""Evaluating a run on a split: its error with the tricks' ``predict``, and the model's own."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from automl.train.settings import EVAL_BATCH_SIZE
from automl.train.splits import Split
from automl.run import Run


@torch.no_grad()
def evaluate(run: Run, split: Split, predictors: Sequence[Callable] = (),
             batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, float]:
    """(error with the tricks' predict, error of the model alone) on ``split``."""
    was_training = run.model.training
    run.model.eval()
    wrong_model = torch.zeros((), dtype=torch.long, device=split.device)
    wrong = torch.zeros_like(wrong_model)
    try:
        for x, y in split.batches(batch_size):
            with run.amp():
                scores = run.model(x)
                wrong_model += (scores.argmax(1) != y).sum()
                for predict in predictors:
                    other = predict(run, x)
                    if other is not None:
                        scores = other
                        break
            wrong += (scores.argmax(1) != y).sum()
    finally:
        run.model.train(was_training)
    n = max(1, len(split))
    return wrong.item() / n, wrong_model.item() / n
