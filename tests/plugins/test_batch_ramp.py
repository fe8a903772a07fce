"""Tests of the batch ramp: the batch grows by ``factor`` at each decay point up to a cap, the LR takes the rest."""

from __future__ import annotations

import numpy as np
import pytest

from automl.testing import StepRecorder, tiny_data, train_tiny
from automl_plugins.batch_ramp import BatchRamp, ramp
from automl_plugins.step_decay import step_decay_factor

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(StepRecorder):
    """Also records the pass and the number of examples of each step."""

    name = "batch_recorder"

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []
        self.sizes: list[int] = []

    def transform_batch(self, run, x, y):
        self.epochs.append(run.epoch)
        self.sizes.append(x.shape[0])
        return x, y


def _run(trick, budget, n_train=128, batch_size=8, lr=0.05):
    rec = Recorder()
    result = train_tiny([trick, rec], budget, data=tiny_data(n_train=n_train), lr=lr, batch_size=batch_size)
    assert result.steps == len(rec.steps) == len(rec.sizes)
    return result, rec, np.array(rec.progress), np.array(rec.lrs), np.array(rec.sizes), np.array(rec.epochs)


@pytest.mark.parametrize("factor", [2, 3, 5])
@pytest.mark.parametrize("max_batch", [8, 40, 100, 10_000])
@pytest.mark.parametrize("initial", [8, 32])
def test_noise_scale_follows_step_decay(factor, max_batch, initial):
    for p in np.linspace(0, 1, 41):
        batch, lr_factor = ramp(p, initial, factor, max_batch)
        assert isinstance(batch, int) and initial <= batch <= max(initial, max_batch)
        assert 0 < lr_factor <= 1
        # lr / B is that of step decay with gamma = 1 / factor at the same batch.
        assert lr_factor / batch == pytest.approx(step_decay_factor(p, (0.5, 0.75), 1 / factor) / initial, rel=1e-12)
        # The LR decays only once the batch can grow no more.
        assert lr_factor == 1 or batch == max(initial, max_batch)


def test_ramp_by_hand():
    assert [ramp(p, 8, 4, 64) for p in (0.0, 0.5, 0.75)] == [(8, 1.0), (32, 1.0), (64, 0.5)]
    assert [ramp(p, 8, 4, 16) for p in (0.0, 0.5, 0.75)] == [(8, 1.0), (16, 0.5), (16, 0.125)]
    assert ramp(0.9, 64, 5, 32) == (64, 1 / 25)  # a cap below the start: plain step decay


def test_batch_absorbs_the_decays_at_pass_boundaries_at_a_constant_lr():
    # 4 passes, decay points at 0.5 and 0.75: exactly the starts of passes 2 and 3.
    lr, factor = 0.05, 2
    result, rec, progress, lrs, sizes, epochs = _run(BatchRamp(factor=factor, max_batch=1024), "4ep", lr=lr)
    assert (lrs == lr).all()
    for epoch, batch in enumerate([8, 8, 16, 32]):
        assert (sizes[epochs == epoch] == batch).all()
        assert (epochs == epoch).sum() == 128 // batch
    assert (sizes[progress < 0.5] == 8).all() and (sizes[progress >= 0.75] == 32).all()
    assert result.attrs["batch_ramp.batch"] == 32


def test_a_batch_change_lands_at_the_first_pass_boundary_after_its_point():
    # 5 passes: the points 0.5 and 0.75 fall inside passes 2 and 3 (2.5 and 3.75 passes).
    lr, factor, cap = 0.05, 4, 64
    _, rec, progress, lrs, sizes, epochs = _run(BatchRamp(factor=factor, max_batch=cap), "5ep", lr=lr)
    assert sizes.max() <= cap
    for epoch, batch in enumerate([8, 8, 8, 32, 64]):
        assert (sizes[epochs == epoch] == batch).all()
    assert (sizes[(progress >= 0.5) & (epochs == 2)] == 8).all() and ((progress >= 0.5) & (epochs == 2)).any()
    # 8 x 4 x 4 = 128 would pass the cap: the batch stops at 64 and the LR takes the remaining 2,
    # at the first step at or past 0.75, not at the pass boundary.
    drop = int(np.argmax(progress >= 0.75))
    assert epochs[drop] == 3 and sizes[drop] == 32
    assert (lrs[:drop] == lr).all()
    assert lrs[drop:] == pytest.approx(np.full(len(lrs) - drop, lr / 2), rel=1e-12)


def test_when_the_cap_is_hit_the_lr_takes_the_remaining_factor():
    lr, factor, cap = 0.05, 4, 16
    _, rec, progress, lrs, sizes, epochs = _run(BatchRamp(factor=factor, max_batch=cap), "4ep", lr=lr)
    assert sizes.max() == cap
    first, second = progress >= 0.5, progress >= 0.75
    assert (sizes[~first] == 8).all() and (lrs[~first] == lr).all()
    # At 0.5 the batch doubles to the cap and the LR takes the other 2 of the 4.
    assert (sizes[first] == 16).all()
    assert lrs[first & ~second] == pytest.approx(np.full((first & ~second).sum(), lr / 2), rel=1e-12)
    # At 0.75 the batch cannot grow: the whole factor goes to the LR.
    assert lrs[second] == pytest.approx(np.full(second.sum(), lr / 2 / factor), rel=1e-12)
    # lr / batch follows step decay with gamma = 1 / factor.
    assert lrs / sizes == pytest.approx([lr / 8 * step_decay_factor(p, (0.5, 0.75), 1 / factor) for p in progress])


def test_a_steps_budget_ramps_at_the_boundary_after_the_point():
    # 128 / 8 = 16 steps a pass; 40 steps put both points (steps 20 and 30) inside pass 1.
    lr = 0.05
    _, rec, progress, lrs, sizes, epochs = _run(BatchRamp(factor=2, max_batch=1024), "40steps", lr=lr)
    assert (epochs <= 1).sum() == 32 and (sizes[epochs <= 1] == 8).all()
    assert (sizes[epochs >= 2] == 32).all() and (epochs >= 2).any()
    assert (lrs == lr).all()


def test_a_time_budget_ramps_by_the_progress_of_the_last_step():
    from types import SimpleNamespace

    from automl import Budget

    trick = BatchRamp(factor=3, max_batch=1024)
    loader = SimpleNamespace(batch_size=16)
    run = SimpleNamespace(loader=loader, budget=Budget.parse("60s"), progress=0.0, epoch=0, step=0, attrs={})
    trick.setup(run)
    for progress, batch in [(0.0, 16), (0.49, 16), (0.5, 48), (0.8, 144)]:
        run.progress, run.epoch, run.step = progress, run.epoch + 1, run.step + 10
        trick.on_epoch_start(run)
        assert loader.batch_size == batch


def test_lr_factor_needs_the_initial_batch():
    with pytest.raises(RuntimeError, match="setup"):
        BatchRamp().lr_factor(0.3)


@pytest.mark.parametrize(("kwargs", "name"), [({"factor": 1}, "factor"), ({"factor": 2.5}, "factor"),
                                              ({"factor": True}, "factor"), ({"max_batch": 0}, "max_batch"),
                                              ({"max_batch": 512.0}, "max_batch"),
                                              ({"milestones": (0.75, 0.5)}, "milestones"),
                                              ({"milestones": (0.5, 1.0)}, "milestones")])
def test_constructor_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BatchRamp(**kwargs)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("batch_ramp")
    trick = build_trick(BatchRamp, rec)
    assert set(rec.params) == {"factor", "max_batch"}
    assert (rec.params["factor"].low, rec.params["factor"].high) == (2, 5)
    assert list(rec.params["max_batch"].choices) == [256, 512, 1024, 2048, 4096]
    assert 2 <= trick.factor <= 5 and trick.max_batch in rec.params["max_batch"].choices
    assert build_trick(BatchRamp, SpaceRecorder("batch_ramp"), {"milestones": [0.3, 0.6]}).milestones == (0.3, 0.6)
    assert set(BatchRamp.owns) == {"batch_size", "lr_schedule"}
