"""Tests of the warmup trick: a linear rise of the LR over the first fraction of the budget."""

from __future__ import annotations

import numpy as np
import pytest

from automl.testing import StepRecorder, train_tiny
from automl_plugins.cosine import Cosine
from automl_plugins.warmup import Warmup, warmup_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tricks, budget="40steps", lr=0.05):
    """The result and (progress, LR) of each step; augmentation with flips as in TrainSettings' defaults."""
    rec = StepRecorder()
    result = train_tiny([*tricks, rec], budget, lr=lr, augment=True, flip=True)
    return result, list(zip(rec.progress, rec.lrs))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.5])
def test_factor_is_linear_up_to_fraction_then_one(fraction):
    warmup = Warmup(fraction=fraction)
    assert 0 <= warmup.lr_factor(0.0) < 1e-4
    inside = np.linspace(0, fraction, 11)[1:-1]
    for p in inside:
        assert warmup.lr_factor(p) == pytest.approx(p / fraction, rel=1e-9)
    slopes = np.diff([warmup.lr_factor(p) for p in inside]) / np.diff(inside)
    assert slopes == pytest.approx(np.full_like(slopes, 1 / fraction))
    for p in (fraction, fraction + 1e-9, (1 + fraction) / 2, 1.0):
        assert warmup.lr_factor(p) == 1.0
    assert warmup_factor(0.3, fraction) == warmup.lr_factor(0.3)


def test_no_warmup_is_a_factor_of_one():
    assert all(Warmup(fraction=0.0).lr_factor(p) == 1.0 for p in (0.0, 0.1, 1.0))


def test_lr_rises_linearly_during_the_first_fraction_of_a_run():
    n, fraction, lr = 40, 0.25, 0.05
    result, seen = _run([Warmup(fraction=fraction)], f"{n}steps", lr)
    assert result.steps == n == len(seen)
    warm = int(n * fraction)
    lrs = np.array([s[1] for s in seen])
    assert lrs[0] < 1e-6 * lr
    assert lrs[1:warm] == pytest.approx(lr * np.arange(1, warm) / warm, rel=1e-9)
    assert np.diff(lrs[:warm]) == pytest.approx(np.full(warm - 1, lr / warm), rel=1e-6)
    assert (lrs[warm:] == lr).all()


def test_warmup_multiplies_the_schedule():
    n, fraction, lr = 20, 0.2, 0.05
    _, seen = _run([Warmup(fraction=fraction), Cosine(final=0.0)], f"{n}steps", lr)
    _, cosine_only = _run([Cosine(final=0.0)], f"{n}steps", lr)
    for (p, both), (q, cos) in zip(seen, cosine_only):
        assert p == q
        assert both == pytest.approx(cos * min(max(p, 1e-8) / fraction, 1.0), rel=1e-9)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_constructor_rejects_out_of_range_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        Warmup(fraction=fraction)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("warmup")
    warmup = build_trick(Warmup, rec)
    dist = rec.params["fraction"]
    assert 0 < dist.low <= warmup.fraction <= dist.high < 1
