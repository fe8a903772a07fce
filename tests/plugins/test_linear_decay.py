"""Tests of linear decay: the LR of every step is base * (1 - progress), reaching zero at the end of the budget."""

from __future__ import annotations

import numpy as np
import pytest

from automl.testing import StepRecorder, train_tiny, try_trick
from automl_plugins.linear_decay import LinearDecay, linear_decay_factor
from automl_plugins.warmup import Warmup

pytestmark = pytest.mark.usefixtures("one_thread")


def test_factor_is_one_minus_progress_down_to_zero():
    decay = LinearDecay()
    assert [decay.lr_factor(p) for p in (0.0, 0.25, 0.5, 1.0)] == [1.0, 0.75, 0.5, 0.0]
    assert LinearDecay(final=0.1).lr_factor(1.0) == pytest.approx(0.1)
    assert linear_decay_factor(0.3) == decay.lr_factor(0.3)


@pytest.mark.parametrize(("budget", "batch_size"), [("25steps", 16), ("2.5ep", 16), ("3ep", 32)])
def test_the_lr_of_every_step_is_the_formula_and_reaches_zero_at_the_end(budget, batch_size):
    lr = 0.1
    rec = StepRecorder()
    result = train_tiny([LinearDecay(), rec], budget, lr=lr, batch_size=batch_size)
    assert result.steps == len(rec.steps) >= 12
    progress, lrs = np.array(rec.progress), np.array(rec.lrs)
    assert lrs == pytest.approx(lr * (1 - progress), rel=1e-12, abs=1e-15)
    # Equal steps of progress, so the LR falls by the same amount each step and the next would be zero.
    step = progress[1] - progress[0]
    assert np.diff(lrs) == pytest.approx(np.full(result.steps - 1, -lr * step), rel=1e-9)
    assert lrs[-1] == pytest.approx(lr * step, rel=1e-9) and result.progress == pytest.approx(1.0)
    if budget.endswith("steps"):
        assert progress == pytest.approx(np.arange(25) / 25)


def test_warmup_multiplies_it():
    lr, n = 0.1, 20
    rec = StepRecorder()
    train_tiny([Warmup(fraction=0.25), LinearDecay(), rec], f"{n}steps", lr=lr)
    p = np.arange(n) / n
    warm = np.where(p < 0.25, np.maximum(p, 1e-8) / 0.25, 1.0)
    assert np.array(rec.lrs) == pytest.approx(lr * warm * (1 - p), rel=1e-12)


def test_searches_nothing_but_whether_it_is_on_and_owns_the_schedule():
    trick, result = try_trick(LinearDecay, "4steps")
    assert trick.final == 0.0 and result.steps == 4
    assert LinearDecay.search_space(None) == {} and LinearDecay.owns == ("lr_schedule",)


@pytest.mark.parametrize("final", [1.0, -0.1])
def test_constructor_rejects_a_final_factor_outside_0_1(final):
    with pytest.raises(ValueError, match=r"linear_decay final LR factor must be in \[0, 1\)"):
        LinearDecay(final=final)
