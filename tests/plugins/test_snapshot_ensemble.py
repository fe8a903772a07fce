"""Tests of snapshot ensembles: M cosine cycles from alpha0, a snapshot at the end of each, their softmax average."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from automl.testing import LAST, run_for, StepRecorder, tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.snapshot_ensemble import SnapshotEnsemble, cycle_of, snapshot_lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")


class WeightRecorder(Trick):
    """The model's weights before each step, and whether ``trick.predict`` abstained there."""

    name = "weight_recorder"

    def __init__(self, trick):
        self.trick = trick
        self.before: list[dict[str, torch.Tensor]] = []
        self.abstained: list[bool] = []

    def on_step_start(self, run):
        self.before.append({k: v.detach().clone() for k, v in run.model.state_dict().items()})
        self.abstained.append(self.trick.predict(run, run.data.val.x[:4]) is None)


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _reference_probs(data, states, x):
    """Softmax of each state's model on ``x``, averaged, by hand."""
    probs = []
    for state in states:
        model = tiny_model(data, seed=123)
        model.load_state_dict(state)
        with torch.no_grad():
            probs.append(model.eval()(x).softmax(dim=1))
    return torch.stack(probs).mean(0)


@pytest.mark.parametrize("cycles", [1, 2, 3, 5, 8])
def test_factor_is_a_cosine_restarted_every_cycle(cycles):
    for c in range(cycles):
        start = c / cycles
        assert snapshot_lr_factor(start, cycles) == pytest.approx(1.0)
        assert snapshot_lr_factor(start + 0.5 / cycles, cycles) == pytest.approx(0.5)
        assert cycle_of(start + 0.25 / cycles, cycles) == c
        inside = np.linspace(start, start + 1 / cycles, 50, endpoint=False)
        values = [snapshot_lr_factor(p, cycles) for p in inside]
        assert all(a > b for a, b in zip(values, values[1:]))
        assert values[-1] < 0.01
    assert cycle_of(1.0, cycles) == cycles - 1
    # A boundary that rounds to just below a whole cycle still restarts there.
    assert cycle_of(1 / cycles * (1 - 1e-15), cycles) == min(1, cycles - 1)


@pytest.mark.parametrize(("cycles", "budget"), [(4, "40steps"), (3, "30steps"), (5, "32steps"), (3, "3ep")])
def test_lr_restarts_from_alpha0_exactly_cycles_times(cycles, budget):
    alpha0, study_lr = 0.2, 0.01
    rec = StepRecorder()
    result = train_tiny([SnapshotEnsemble(cycles=cycles, alpha0=alpha0), rec], budget, lr=study_lr)
    lrs = np.array(rec.lrs)
    assert len(lrs) == result.steps >= 4 * cycles
    # The trick owns the schedule: the study's base LR is replaced by alpha0.
    assert lrs[0] == pytest.approx(alpha0)
    jumps = np.flatnonzero(np.diff(lrs) > 0) + 1
    assert len(jumps) == cycles - 1
    for p, lr in zip(rec.progress, lrs):
        within = p * cycles - min(cycles - 1, math.floor(p * cycles + 1e-9))
        assert lr == pytest.approx(alpha0 * 0.5 * (math.cos(math.pi * max(within, 0.0)) + 1))
    for start, end in zip([0, *jumps], [*jumps, len(lrs)]):
        cycle = lrs[start:end]
        assert cycle[0] >= alpha0 * snapshot_lr_factor(1 / (end - start), 1) - 1e-12
        assert all(a > b for a, b in zip(cycle, cycle[1:]))
        assert cycle[-1] < 0.1 * alpha0
    if result.steps % cycles == 0:  # cycles of whole steps start exactly at alpha0
        assert lrs[[0, *jumps]] == pytest.approx(np.full(cycles, alpha0), rel=1e-12)
        assert list(jumps) == [c * result.steps // cycles for c in range(1, cycles)]


def test_one_snapshot_at_the_end_of_each_cycle():
    cycles, n = 4, 40
    data = tiny_data()
    model = tiny_model(data)
    trick = SnapshotEnsemble(cycles=cycles, alpha0=0.1)
    rec = WeightRecorder(trick)
    result = train_tiny([trick, rec], f"{n}steps", data=data, model=model)
    assert result.steps == n
    assert trick.taken == cycles == len(trick.snapshots)
    assert result.attrs["snapshot_ensemble.snapshots"] == cycles
    per_cycle = n // cycles
    for c, snap in enumerate(list(trick.snapshots)[:-1]):
        # The weights before the first step of cycle c + 1 are the end of cycle c.
        assert _same(snap, rec.before[(c + 1) * per_cycle])
        assert not _same(snap, rec.before[(c + 1) * per_cycle - 1])
    assert _same(trick.snapshots[-1], model.state_dict())
    for a, b in itertools.combinations(trick.snapshots, 2):
        assert not torch.equal(a["5.weight"], b["5.weight"])
    # Snapshots are copies, not views of the live weights.
    assert all(s["5.weight"].data_ptr() != model[5].weight.data_ptr() for s in trick.snapshots)
    # No ensemble before the first snapshot, one from then on.
    assert rec.abstained == [True] * per_cycle + [False] * (n - per_cycle)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_prediction_is_the_softmax_average_of_the_last_k_snapshots(k):
    cycles, n = 3, 30
    data = tiny_data()
    model = tiny_model(data)
    trick = SnapshotEnsemble(cycles=cycles, alpha0=0.2, k=k)
    rec = WeightRecorder(trick)
    result = train_tiny([trick, rec], f"{n}steps", data=data, model=model)
    ends = [rec.before[(c + 1) * n // cycles] for c in range(cycles - 1)] + [model.state_dict()]
    assert len(trick.snapshots) == k
    assert all(_same(s, e) for s, e in zip(trick.snapshots, ends[-k:]))
    x = data.val.x
    reference = _reference_probs(data, ends[-k:], x)
    got = trick.predict(run_for(model, autocast=None), x)
    assert got.shape == (len(x), data.num_classes)
    assert torch.allclose(got, reference, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(len(x)))
    if k > 1:
        assert not torch.allclose(got, _reference_probs(data, ends[-1:], x), atol=1e-4)
    # The trial's value is the ensemble's error; the model alone is recorded beside it.
    assert result.val_error == pytest.approx((reference.argmax(1) != data.val.y).float().mean().item())
    with torch.no_grad():
        alone = (model.eval()(x).argmax(1) != data.val.y).float().mean().item()
    assert result.val_error_model == pytest.approx(alone)
    if k == 1:
        assert result.val_error == result.val_error_model
    assert result.attrs["inference_cost"] == k
    assert result.attrs["snapshot_ensemble.snapshots"] == cycles


class CostRecorder(Trick):
    """``run.attrs`` as each step starts."""

    name = "cost_recorder"
    order = LAST  # after the ensemble's own hooks, as a study would run it

    def __init__(self):
        self.seen: list[tuple[int | None, int | None]] = []

    def on_step_start(self, run):
        self.seen.append((run.attrs.get("inference_cost"), run.attrs.get("snapshot_ensemble.snapshots")))


def test_inference_cost_counts_only_the_snapshots_that_exist():
    trick = SnapshotEnsemble(cycles=4, alpha0=0.1, k=3)
    rec = CostRecorder()
    result = train_tiny([trick, rec], "40steps")
    # Before the first snapshot a prediction is the model's own: one forward pass.
    expected = [(1, None)] * 10 + [(1, 1)] * 10 + [(2, 2)] * 10 + [(3, 3)] * 10
    assert rec.seen == expected
    assert result.attrs["inference_cost"] == 3
    assert result.attrs["snapshot_ensemble.snapshots"] == trick.taken == 4


def test_setup_replaces_the_base_lr_and_forgets_an_earlier_run():
    data = tiny_data()
    trick = SnapshotEnsemble(cycles=2, alpha0=0.3)
    train_tiny([trick], "10steps", data=data)
    assert trick.taken == 2
    run = SimpleNamespace(model=tiny_model(data), attrs={}, base_lr=0.05)
    trick.setup(run)
    assert run.base_lr == 0.3
    assert trick.taken == 0 and not trick.snapshots
    assert trick.predict(run, data.val.x) is None


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"cycles": 0}, "cycles"), ({"cycles": 2.5}, "cycles"), ({"alpha0": 0.0}, "alpha0"),
    ({"alpha0": -0.1}, "alpha0"), ({"alpha0": math.nan}, "alpha0"), ({"cycles": 3, "k": 4}, "k"),
    ({"k": 0}, "k"),
])
def test_constructor_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SnapshotEnsemble(**kwargs)


def test_k_defaults_to_every_cycle():
    assert SnapshotEnsemble(cycles=5).k == 5


@pytest.mark.parametrize("cycles", [2, 3, 8])
def test_search_space_bounds_k_by_the_cycles(cycles):
    from automl.overrides import Pinned
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("snapshot_ensemble", {"cycles": Pinned(cycles)})
    trick = build_trick(SnapshotEnsemble, rec)
    assert trick.cycles == cycles
    assert (rec.params["k"].low, rec.params["k"].high) == (1, cycles)
    assert 1 <= trick.k <= cycles
    free = SpaceRecorder("snapshot_ensemble")
    build_trick(SnapshotEnsemble, free)
    assert (free.params["cycles"].low, free.params["cycles"].high) == (2, 8)
    alpha0 = free.params["alpha0"]
    assert (alpha0.low, alpha0.high, alpha0.log) == (0.05, 0.4, True)


def test_predict_runs_under_the_run_s_autocast():
    data = tiny_data()
    model = tiny_model(data)
    trick = SnapshotEnsemble(cycles=2, alpha0=0.1)
    train_tiny([trick], "10steps", data=data, model=model)
    x = data.val.x
    full = trick.predict(run_for(model, autocast=None), x)
    low = trick.predict(run_for(model, autocast={"device_type": "cpu", "dtype": torch.bfloat16}), x)
    # Probabilities come back in float32 either way; bfloat16 forward passes round them differently.
    assert low.dtype == full.dtype == torch.float32
    assert torch.allclose(low, full, atol=0.05)
    assert not torch.equal(low, full)


def test_start_makes_the_first_cycle_longer_and_the_others_share_the_rest():
    from automl_plugins.snapshot_ensemble import cycle_bounds

    assert cycle_bounds(3, 0.5) == pytest.approx([0, 0.5, 0.75, 1])
    assert cycle_bounds(4, None) == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    # start = 1 / cycles is the equal cut.
    for p in np.linspace(0, 1, 101):
        assert snapshot_lr_factor(p, 4, 0.25) == pytest.approx(snapshot_lr_factor(p, 4))
        assert cycle_of(p, 4, 0.25) == cycle_of(p, 4)
    data = tiny_data()
    model = tiny_model(data)
    trick = SnapshotEnsemble(cycles=3, alpha0=0.2, start=0.5)
    rec, steps = WeightRecorder(trick), StepRecorder()
    train_tiny([trick, rec, steps], "40steps", data=data, model=model)
    lrs = np.array(steps.lrs)
    jumps = list(np.flatnonzero(np.diff(lrs) > 0) + 1)
    assert jumps == [20, 30]  # cycles of 20, 10 and 10 of the 40 steps
    for start, end in zip([0, 20, 30], [20, 30, 40]):
        cycle = lrs[start:end]
        assert cycle[0] == pytest.approx(0.2)
        assert all(a > b for a, b in zip(cycle, cycle[1:]))
        assert cycle == pytest.approx([0.2 * 0.5 * (math.cos(math.pi * i / (end - start)) + 1)
                                       for i in range(end - start)])
    assert trick.taken == 3
    assert _same(trick.snapshots[0], rec.before[20]) and _same(trick.snapshots[1], rec.before[30])
    assert _same(trick.snapshots[2], model.state_dict())
