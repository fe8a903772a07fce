"""Tests of the one-cycle schedule: linear from ``start`` up to the base LR at ``peak``, then down to ``final``."""

from __future__ import annotations

import numpy as np
import pytest

from automl.testing import StepRecorder, train_tiny
from automl_plugins.one_cycle import OneCycle, one_cycle_factor

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("peak", "start", "final"), [(5 / 24, 0.0, 0.0), (0.1, 0.0, 0.0), (0.4, 0.2, 0.05)])
def test_factor_is_piecewise_linear_through_start_peak_and_final(peak, start, final):
    cycle = OneCycle(peak=peak, start=start, final=final)
    assert cycle.lr_factor(0.0) == pytest.approx(start, abs=1e-12)
    assert cycle.lr_factor(peak) == pytest.approx(1.0)
    assert cycle.lr_factor(1.0) == pytest.approx(final, abs=1e-12)
    up, down = np.linspace(0, peak, 21), np.linspace(peak, 1, 21)
    rise = np.array([cycle.lr_factor(p) for p in up])
    fall = np.array([cycle.lr_factor(p) for p in down])
    assert np.diff(rise) / np.diff(up) == pytest.approx(np.full(20, (1 - start) / peak))
    assert np.diff(fall) / np.diff(down) == pytest.approx(np.full(20, (final - 1) / (1 - peak)))
    # The peak is the maximum and the two sides meet there.
    grid = np.linspace(0, 1, 1001)
    assert max(cycle.lr_factor(p) for p in grid) <= 1.0 + 1e-12
    assert cycle.lr_factor(peak - 1e-9) == pytest.approx(1.0, abs=1e-6)
    assert one_cycle_factor(0.3, peak, start, final) == cycle.lr_factor(0.3)


def test_default_peak_is_pages():
    assert OneCycle().peak == pytest.approx(5 / 24)
    assert OneCycle().lr_factor(5 / 24) == pytest.approx(1.0)


@pytest.mark.parametrize(("budget", "peak"), [("40steps", 0.25), ("40steps", 0.22), ("3ep", 0.3), ("37steps", 0.1)])
def test_lr_peaks_at_the_steps_around_the_peak_and_ends_near_zero(budget, peak):
    lr = 0.05
    rec = StepRecorder()
    result = train_tiny([OneCycle(peak=peak), rec], budget, lr=lr)
    assert result.steps == len(rec.steps) >= 20
    progress, lrs = np.array(rec.progress), np.array(rec.lrs)
    after = int(np.argmax(progress >= peak))  # the first step at or past the peak
    top = int(np.argmax(lrs))
    # The slopes differ on the two sides, so the top is whichever neighbour of the peak is higher.
    assert top in (after - 1, after)
    if np.isclose(progress[after], peak):
        assert top == after and lrs[top] == pytest.approx(lr)
    assert lrs[0] < 1e-12
    assert lrs[top] > 0.9 * lr
    # Linear on both sides: equal steps of progress change the LR by equal amounts.
    rising = np.diff(lrs[:after]) / np.diff(progress[:after])
    falling = np.diff(lrs[after:]) / np.diff(progress[after:])
    assert len(rising) >= 2 and len(falling) >= 10
    assert rising == pytest.approx(np.full_like(rising, lr / peak), rel=1e-9)
    assert falling == pytest.approx(np.full_like(falling, -lr / (1 - peak)), rel=1e-9)
    # The last step is one step of the descent away from zero.
    assert 0 < lrs[-1] <= (lrs[-2] - lrs[-1]) * (1 + 1e-9)


@pytest.mark.parametrize("kwargs", [{"peak": 0.0}, {"peak": 1.0}, {"peak": -0.2}, {"start": -0.1}, {"start": 1.5},
                                    {"final": -0.01}, {"final": 1.01}])
def test_constructor_rejects_out_of_range_arguments(kwargs):
    (name, _), = kwargs.items()
    with pytest.raises(ValueError, match=name):
        OneCycle(**kwargs)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("one_cycle")
    cycle = build_trick(OneCycle, rec)
    assert set(rec.params) == {"peak"}
    dist = rec.params["peak"]
    assert (dist.low, dist.high) == (0.1, 0.4)
    assert dist.low <= cycle.peak <= dist.high
    assert OneCycle.owns == ("lr_schedule",)
