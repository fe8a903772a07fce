"""Evaluating a run on a split: its error with the tricks' ``predict``, and the model's own."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from automl.train.settings import EVAL_BATCH_SIZE
from automl.train.splits import Split
from automl.run import Run


@torch.no_grad()
def wrong_counts(run: Run, split: Split, predictors: Sequence[Callable] = (),
                 batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
    """The images of ``split`` the run gets wrong, with the tricks' predict and with the model alone, as a tensor
    of two counts on the device: reading them waits for the evaluation, so the training loop reads them once it
    waits anyway (at a rung, after its clock's one synchronisation)."""
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
    return torch.stack([wrong, wrong_model])


def errors_of(counts: torch.Tensor, split: Split) -> tuple[float, float]:
    """(error with the tricks' predict, error of the model alone) from the :func:`wrong_counts` on ``split``."""
    wrong, wrong_model = counts.tolist()
    n = max(1, len(split))
    return wrong / n, wrong_model / n


def evaluate(run: Run, split: Split, predictors: Sequence[Callable] = (),
             batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, float]:
    """(error with the tricks' predict, error of the model alone) on ``split``."""
    return errors_of(wrong_counts(run, split, predictors, batch_size), split)
