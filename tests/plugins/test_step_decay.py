"""Tests of step decay: the LR is multiplied by gamma at each milestone, as fractions of the budget."""

from __future__ import annotations

import numpy as np
import pytest

from automl.testing import StepRecorder, train_tiny
from automl_plugins.step_decay import StepDecay, step_decay_factor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("gamma", [0.05, 0.1, 0.3])
def test_factor_is_one_then_gamma_then_gamma_squared(gamma):
    decay = StepDecay(gamma=gamma)
    assert decay.milestones == (0.5, 0.75)
    for p in np.linspace(0, 1, 201):
        expected = 1.0 if p < 0.5 else gamma if p < 0.75 else gamma ** 2
        assert decay.lr_factor(p) == pytest.approx(expected, rel=1e-12)
    assert decay.lr_factor(0.5 - 1e-9) == 1.0
    assert decay.lr_factor(0.5) == pytest.approx(gamma)
    assert decay.lr_factor(0.75 - 1e-9) == pytest.approx(gamma)
    assert decay.lr_factor(0.75) == pytest.approx(gamma ** 2)
    assert decay.lr_factor(1.0) == pytest.approx(gamma ** 2)
    assert step_decay_factor(0.6, (0.5, 0.75), gamma) == decay.lr_factor(0.6)


def test_milestones_are_an_option():
    decay = StepDecay(gamma=0.5, milestones=[0.2, 0.4, 0.9])
    assert [decay.lr_factor(p) for p in (0.1, 0.2, 0.5, 0.95)] == pytest.approx([1, 0.5, 0.25, 0.125])
    assert all(StepDecay(gamma=0.5, milestones=()).lr_factor(p) == 1.0 for p in (0.0, 0.5, 1.0))


@pytest.mark.parametrize("n", [30, 41])
def test_lr_drops_exactly_at_the_first_step_past_each_milestone(n):
    lr, gamma = 0.05, 0.2
    rec = StepRecorder()
    result = train_tiny([StepDecay(gamma=gamma), rec], f"{n}steps", lr=lr)
    assert result.steps == n == len(rec.steps)
    progress, lrs = np.array(rec.progress), np.array(rec.lrs)
    assert progress == pytest.approx(np.arange(n) / n)  # a steps budget: p = step / n
    first, second = int(np.argmax(progress >= 0.5)), int(np.argmax(progress >= 0.75))
    # The drop lands on the step where p reaches the milestone, not a step early or late.
    assert first == int(np.ceil(0.5 * n)) and second == int(np.ceil(0.75 * n))
    assert (lrs[:first] == lr).all()
    assert lrs[first:second] == pytest.approx(np.full(second - first, lr * gamma), rel=1e-12)
    assert lrs[second:] == pytest.approx(np.full(n - second, lr * gamma ** 2), rel=1e-12)


@pytest.mark.parametrize("gamma", [0.0, -0.1, 1.5])
def test_constructor_rejects_out_of_range_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        StepDecay(gamma=gamma)


@pytest.mark.parametrize("milestones", [(0.75, 0.5), (0.0, 0.5), (0.5, 1.0), (0.5, 0.5), "0.5", (0.5, "x")])
def test_constructor_rejects_bad_milestones(milestones):
    with pytest.raises(ValueError, match="milestones"):
        StepDecay(milestones=milestones)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("step_decay")
    decay = build_trick(StepDecay, rec)
    assert set(rec.params) == {"gamma"}
    dist = rec.params["gamma"]
    assert (dist.low, dist.high, dist.log) == (0.05, 0.3, True)
    assert dist.low <= decay.gamma <= dist.high
    assert build_trick(StepDecay, SpaceRecorder("step_decay"), {"milestones": [0.3, 0.6]}).milestones == (0.3, 0.6)
    assert StepDecay.owns == ("lr_schedule",)
