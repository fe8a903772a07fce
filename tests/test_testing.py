"""Tests of the helpers in automl.testing: tiny data and models, train_tiny, try_trick, StepRecorder,
BatchRecorder and one_thread."""

from __future__ import annotations

import pytest
import torch

from automl.testing import (BatchRecorder, StepRecorder, one_thread, tiny_data, tiny_model, train_tiny,
                            try_trick)
from automl.trick import Trick


def test_tiny_data_shapes_and_determinism():
    data, again = tiny_data(), tiny_data()
    assert data.input_shape == (1, 8, 8)
    for split, n in ((data.train, 128), (data.val, 64), (data.test, 64)):
        assert split.x.shape == (n, 1, 8, 8) and split.y.shape == (n,)
    for name in ("train", "val", "test"):
        a, b = getattr(data, name), getattr(again, name)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y), name


def test_tiny_model_weights_depend_only_on_the_seed():
    data = tiny_data()
    a, b, c = tiny_model(data, seed=0), tiny_model(data, seed=0), tiny_model(data, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    assert a(data.val.x[:2]).shape == (2, data.num_classes)


def test_train_tiny_runs_the_budget_and_the_recorder_sees_every_step(one_thread):
    n, lr = 12, 0.02
    rec = StepRecorder()
    result = train_tiny([rec], f"{n}steps", lr=lr)
    assert result.steps == n == len(rec.steps)
    assert [s[1] for s in rec.steps] == list(range(n))
    assert rec.progress[0] == 0.0 and all(p < 1 for p in rec.progress)
    assert all(a <= b for a, b in zip(rec.progress, rec.progress[1:]))
    assert rec.lrs == [lr] * n and [s[2] for s in rec.steps] == [lr] * n


def test_one_thread_restores_the_thread_count_even_when_the_body_raises():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(RuntimeError, match="boom"), one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_try_trick_builds_the_trick_through_its_search_space_and_trains_with_it(one_thread):
    from automl_plugins.label_smoothing import LabelSmoothing
    from automl_plugins.warmup import Warmup

    trick, result = try_trick(LabelSmoothing, "6steps", params={"epsilon": 0.15})
    assert trick.epsilon == 0.15 and result.steps == 6
    sampled = {try_trick(Warmup, "1steps", seed=seed)[0].fraction for seed in range(4)}
    assert len(sampled) == 4 and all(0.01 <= f <= 0.3 for f in sampled)  # drawn from warmup's own range
    recorded = StepRecorder()
    try_trick(Warmup, "10steps", params={"fraction": 0.3}, others=[recorded], lr=0.1)
    assert recorded.lrs[0] < recorded.lrs[2] < recorded.lrs[-1] == pytest.approx(0.1)  # warmed up while training
    with pytest.raises(ValueError, match="suggests no label_smoothing.eps; it suggests label_smoothing.epsilon"):
        try_trick(LabelSmoothing, params={"eps": 0.1})


class Breaks(Trick):
    """Raises in transform_batch at its third step."""

    name = "breaks"

    def transform_batch(self, run, x, y):
        if run.step == 2:
            raise RuntimeError("shapes do not match")
        return x, y


class BreaksSchedule(Trick):
    """Raises in lr_factor past half the budget."""

    name = "breaks_schedule"

    def lr_factor(self, progress):
        if progress >= 0.5:
            raise ZeroDivisionError("division by zero")
        return 1.0


@pytest.mark.parametrize(("cls", "error", "note"), [
    (Breaks, RuntimeError, "raised by Breaks.transform_batch at step 2 (progress 0.333), in try_trick"),
    (BreaksSchedule, ZeroDivisionError, "raised by BreaksSchedule.lr_factor (progress 0.500), in try_trick"),
])
def test_try_trick_names_the_hook_and_step_that_raised(one_thread, cls, error, note):
    with pytest.raises(error) as caught:  # the trick's own exception, for pytest.raises in a plugin's tests
        try_trick(cls, "6steps")
    assert caught.value.__notes__ == [note]


def test_try_trick_checks_the_class_as_the_host_does():
    with pytest.raises(ValueError, match=r"Nameless.name = 'Bad Name' must match \[a-z\]\[a-z0-9_\]\*"):
        try_trick(type("Nameless", (Trick,), {"name": "Bad Name"}), "1steps")


def test_batch_recorder_sees_the_batches_after_the_tricks_before_it(one_thread):
    class Negate(Trick):
        name = "negate"

        def transform_batch(self, run, x, y):
            return -x, y

    data, before, after = tiny_data(), BatchRecorder(), BatchRecorder()
    train_tiny([before, Negate(), after], "5steps", data=data)
    assert len(before.batches) == len(after.batches) == 5
    train_rows = {tuple(row.tolist()) for row in data.train.x.flatten(1)}
    for (x0, y0), (x1, y1) in zip(before.batches, after.batches):
        assert torch.equal(x1, -x0) and torch.equal(y1, y0) and x0.shape == (16, 1, 8, 8)
        assert all(tuple(row.tolist()) in train_rows for row in x0.flatten(1))  # no augmentation in train_tiny
