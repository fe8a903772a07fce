"""Tests of exponential decay: the LR of every step is base * final ** progress, landing on final at the end."""

from __future__ import annotations

import numpy as np
import pytest

from automl.testing import StepRecorder, train_tiny, try_trick
from automl_plugins.exp_decay import ExpDecay, exp_decay_factor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("final", [1e-3, 0.01, 0.5, 1.0])
def test_factor_falls_by_the_same_ratio_over_equal_stretches(final):
    decay = ExpDecay(final=final)
    assert decay.lr_factor(0.0) == 1.0 and decay.lr_factor(1.0) == pytest.approx(final)
    grid = np.linspace(0, 1, 11)
    values = np.array([decay.lr_factor(p) for p in grid])
    assert values[1:] / values[:-1] == pytest.approx(np.full(10, final ** 0.1))
    assert exp_decay_factor(0.3, final) == decay.lr_factor(0.3)


@pytest.mark.parametrize(("budget", "batch_size"), [("30steps", 16), ("3ep", 32)])
def test_the_lr_of_every_step_is_the_formula(budget, batch_size):
    lr, final = 0.08, 0.02
    rec = StepRecorder()
    result = train_tiny([ExpDecay(final=final), rec], budget, lr=lr, batch_size=batch_size)
    assert result.steps == len(rec.steps) >= 12
    progress, lrs = np.array(rec.progress), np.array(rec.lrs)
    if budget.endswith("steps"):
        assert progress == pytest.approx(np.arange(30) / 30)  # a steps budget: p = step / n
    assert lrs == pytest.approx(lr * final ** progress, rel=1e-12)
    assert [s[2] for s in rec.steps] == pytest.approx(list(lr * final ** progress), rel=1e-12)  # run.lr too
    # The last step is one step's decay above the end of the schedule.
    assert lr * final < lrs[-1] <= lr * final ** (1 - 1 / result.steps) * (1 + 1e-12)


def test_search_space_is_log_scaled_and_it_owns_the_schedule():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("exp_decay")
    decay = build_trick(ExpDecay, rec)
    dist = rec.params["final"]
    assert set(rec.params) == {"final"} and (dist.low, dist.high, dist.log) == (1e-3, 0.1, True)
    assert ExpDecay.owns == ("lr_schedule",)
    trick, result = try_trick(ExpDecay, "5steps")
    assert dist.low <= trick.final <= dist.high and decay.final == pytest.approx(0.01)


@pytest.mark.parametrize("final", [0.0, -0.1, 1.5])
def test_constructor_rejects_a_final_factor_outside_0_1(final):
    with pytest.raises(ValueError, match="exp_decay final LR factor must be in"):
        ExpDecay(final=final)
