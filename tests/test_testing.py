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

    data, before, after = tiny_data(), BatchRecorder(before=True), BatchRecorder()
    train_tiny([after, Negate(), before], "5steps", data=data)  # the study's order, not the list's
    assert len(before.batches) == len(after.batches) == 5
    train_rows = {tuple(row.tolist()) for row in data.train.x.flatten(1)}
    for (x0, y0), (x1, y1) in zip(before.batches, after.batches):
        assert torch.equal(x1, -x0) and torch.equal(y1, y0) and x0.shape == (16, 1, 8, 8)
        assert all(tuple(row.tolist()) in train_rows for row in x0.flatten(1))  # no augmentation in train_tiny


# ---------------------------------------------------------------------------- as a study would


class Tagger(Trick):
    """Appends its name to a shared list at every step start, to see the order hooks run in."""

    name = "tagger"
    log: list[str] = []

    def on_step_start(self, run):
        self.log.append(self.name)


def _tagger(name: str, order: int) -> Trick:
    return type(name.title(), (Tagger,), {"name": name, "order": order})()


def test_train_tiny_runs_hooks_in_the_study_order_whatever_the_list(one_thread):
    Tagger.log.clear()
    train_tiny([_tagger("zeta", 0), _tagger("late", 5), _tagger("alpha", 0), _tagger("early", -3)], "1steps")
    assert Tagger.log == ["early", "alpha", "zeta", "late"]  # order, then name


class Schedule(Trick):
    name = "schedule_a"
    owns = ("lr_schedule",)


class OtherSchedule(Trick):
    name = "schedule_b"
    owns = ("lr_schedule",)


def test_train_tiny_and_try_trick_refuse_two_owners_of_one_resource():
    with pytest.raises(ValueError, match="tricks schedule_a and schedule_b both own 'lr_schedule'; pin at most one "
                                         "of them on: a study's trial never enables both"):
        train_tiny([Schedule(), OtherSchedule()], "1steps")
    with pytest.raises(ValueError, match="both own 'lr_schedule'"):
        try_trick(Schedule, "1steps", others=[OtherSchedule()])


class Ranged(Trick):
    name = "ranged"

    @classmethod
    def search_space(cls, trial):
        return {"rate": trial.suggest_float("rate", 0.1, 0.5),
                "kind": trial.suggest_categorical("kind", ["a", "b"]),
                "count": trial.suggest_int("count", 2, 8, step=2)}

    def __init__(self, rate=0.2, kind="a", count=2, attrs=None):
        self.rate, self.kind, self.count, self.attrs = rate, kind, count, attrs or {}

    def on_trial_end(self, run, ended):
        for key, value in self.attrs.items():
            run.attrs[key] = value


@pytest.mark.parametrize(("params", "message"), [
    ({"rate": 0.9}, r"params rate=0.9 is outside ranged.rate's search space \[0.1, 0.5\]: no trial of a study"),
    ({"kind": "c"}, r"params kind='c' is outside ranged.kind's search space \{'a', 'b'\}"),
    ({"count": 3}, r"params count=3 is outside ranged.count's search space \[2, 8\] step 2"),
    ({"size": 3}, r"Ranged.search_space suggests no ranged.size"),
])
def test_try_trick_refuses_params_its_space_would_never_suggest(params, message):
    with pytest.raises(ValueError, match=message):
        try_trick(Ranged, "1steps", params=params)


def test_try_trick_accepts_params_inside_the_space(one_thread):
    trick, _ = try_trick(Ranged, "1steps", params={"rate": 0.5, "kind": "b", "count": 8})
    assert (trick.rate, trick.kind, trick.count) == (0.5, "b", 8)


@pytest.mark.parametrize(("attrs", "message"), [
    ({"steps": 3}, r"run.attrs\['steps'\] is a key automl records itself; prefix it with the trick's name"),
])
def test_try_trick_refuses_attrs_a_study_could_not_store(one_thread, attrs, message):
    with pytest.raises(ValueError, match=message + "; a study would fail the trial"):
        try_trick(Ranged, "1steps", options={"attrs": attrs})
    trick, result = try_trick(Ranged, "1steps", options={"attrs": {"ranged.steps": 3}})
    assert result.attrs["ranged.steps"] == 3


def test_a_value_that_stops_being_json_after_it_is_set_is_refused_as_the_study_refuses_it(one_thread):
    class Grows(Trick):
        name = "grows"

        def setup(self, run):
            run.attrs["grows.seen"] = []

        def on_step_end(self, run, loss):
            run.attrs["grows.seen"].append(loss.detach())  # a tensor inside a list set as JSON

    with pytest.raises(ValueError, match=r"run.attrs\['grows.seen'\] = \[tensor.*cannot be stored with the trial"):
        try_trick(Grows, "1steps")
