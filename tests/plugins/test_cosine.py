"""Tests of the cosine trick: the LR decays from the base to ``final`` exactly over the budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automl.testing import StepRecorder, train_tiny
from automl_plugins.cosine import Cosine, cosine_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tricks, budget, lr=0.05, batch_size=16):
    """The result and (progress, LR) of each step; augmentation with flips as in TrainSettings' defaults."""
    rec = StepRecorder()
    result = train_tiny([*tricks, rec], budget, lr=lr, batch_size=batch_size, augment=True, flip=True)
    return result, list(zip(rec.progress, rec.lrs))


@pytest.mark.parametrize("final", [0.0, 0.05, 0.3, 1.0])
def test_factor_goes_from_one_to_final(final):
    cosine = Cosine(final=final)
    assert cosine.lr_factor(0.0) == pytest.approx(1.0)
    assert cosine.lr_factor(1.0) == pytest.approx(final, abs=1e-12)
    assert cosine.lr_factor(0.5) == pytest.approx(0.5 * (1 + final))
    grid = np.linspace(0, 1, 101)
    values = np.array([cosine.lr_factor(p) for p in grid])
    assert (np.diff(values) <= 1e-15).all()
    assert ((values >= final - 1e-12) & (values <= 1 + 1e-12)).all()
    # A cosine: symmetric about the midpoint.
    assert values + values[::-1] == pytest.approx(np.full_like(values, 1 + final))
    assert cosine_factor(0.3, final) == cosine.lr_factor(0.3)


def test_strictly_decreasing_below_one():
    values = [Cosine(final=0.1).lr_factor(p) for p in np.linspace(0, 1, 50)]
    assert all(a > b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize(("budget", "batch_size"), [("40steps", 16), ("3ep", 32), ("2.5ep", 16)])
def test_schedule_lands_on_the_end_of_the_budget(budget, batch_size):
    lr, final = 0.05, 0.1
    result, seen = _run([Cosine(final=final)], budget, lr, batch_size)
    assert len(seen) == result.steps >= 10
    lrs = [s[1] for s in seen]
    assert lrs[0] == pytest.approx(lr)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    last_step = lrs[-2] - lrs[-1]
    assert 0 <= lrs[-1] - lr * final <= last_step
    for p, value in seen:
        assert value == pytest.approx(lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p))))


@pytest.mark.parametrize("final", [-0.01, 1.01, 2.0])
def test_constructor_rejects_out_of_range_final(final):
    with pytest.raises(ValueError, match="final"):
        Cosine(final=final)
