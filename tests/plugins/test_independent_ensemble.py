"""Tests of independent ensembles: M members from fresh weights, each with its own schedule, their softmax averaged."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from automl.testing import StepRecorder, run_for, tiny_builder, tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.independent_ensemble import IndependentEnsemble, member_seed
from automl_plugins.snapshot_ensemble import snapshot_lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")

MEMBERS, STEPS, SEED = 3, 30, 5
PER_MEMBER = STEPS // MEMBERS


class Recorder(Trick):
    """The weights and the optimizer's state size before each step, and the weights after it."""

    name = "recorder"

    def __init__(self):
        self.before: list[dict[str, torch.Tensor]] = []
        self.after: list[dict[str, torch.Tensor]] = []
        self.optimizer_state: list[int] = []

    def on_step_start(self, run):
        self.before.append(_copy(run.model.state_dict()))
        self.optimizer_state.append(len(run.optimizer.state))

    def on_step_end(self, run, loss):
        self.after.append(_copy(run.model.state_dict()))


def _copy(state):
    return {k: v.detach().clone() for k, v in state.items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train(seed=SEED, members=MEMBERS, budget=f"{STEPS}steps"):
    data = tiny_data()
    model = tiny_model(data, seed=seed)
    trick, rec, steps = IndependentEnsemble(members=members, alpha0=0.2), Recorder(), StepRecorder()
    result = train_tiny([trick, rec, steps], budget, data=data, model=model, seed=seed,
                        build_model=tiny_builder(data))
    return data, model, trick, rec, steps, result


def test_members_start_from_fresh_weights_of_their_own_seeds():
    data, model, trick, rec, _, result = _train()
    assert result.steps == STEPS
    starts = [m * PER_MEMBER for m in range(MEMBERS)]
    # The first member is the trial's own model, as every other arm at this seed starts.
    assert _same(rec.before[0], tiny_model(data, seed=SEED).state_dict())
    for m, step in enumerate(starts[1:], 1):
        # A member's first weights are those its own seed draws, not the previous member's last.
        assert _same(rec.before[step], tiny_model(data, seed=member_seed(SEED, m)).state_dict())
        assert not _same(rec.before[step], rec.after[step - 1])
    for a, b in itertools.combinations(starts, 2):
        assert not torch.equal(rec.before[a]["5.weight"], rec.before[b]["5.weight"])
    # Each member's final weights are kept, the last the model's own.
    assert len(trick.finished) == MEMBERS
    for m in range(MEMBERS - 1):
        assert _same(trick.finished[m], rec.after[starts[m + 1] - 1])
    assert _same(trick.finished[-1], model.state_dict())
    assert trick.seeds == [None, member_seed(SEED, 1), member_seed(SEED, 2)]


def test_each_member_starts_with_the_optimizer_state_reset():
    *_, rec, _, _ = _train()
    # SGD with momentum keeps a buffer per parameter after the first step; a new member has none.
    starts = {m * PER_MEMBER for m in range(MEMBERS)}
    for step, size in enumerate(rec.optimizer_state):
        assert (size == 0) == (step in starts), step


def test_each_member_s_schedule_restarts_from_its_start():
    *_, steps, _ = _train()
    lrs = np.array(steps.lrs)
    per_member = lrs.reshape(MEMBERS, PER_MEMBER)
    # The same full cosine for every member: alpha0 at its first step, about zero at its last.
    for member in per_member:
        assert member[0] == pytest.approx(0.2)
        assert all(a > b for a, b in zip(member, member[1:]))
        assert member[-1] < 0.1 * 0.2
        assert member == pytest.approx(per_member[0], rel=1e-9)
    expected = [0.2 * 0.5 * (math.cos(math.pi * (s % PER_MEMBER) / PER_MEMBER) + 1) for s in range(STEPS)]
    assert lrs == pytest.approx(expected, rel=1e-9)


def test_prediction_is_the_mean_of_the_members_softmax():
    data, model, trick, _, _, result = _train()
    x = data.val.x
    probs = []
    for state in trick.finished:
        member = tiny_model(data)
        member.load_state_dict(state)
        with torch.no_grad():
            probs.append(member.eval()(x).softmax(dim=1))
    reference = torch.stack(probs).mean(0)
    got = trick.predict(run_for(model, autocast=None), x)
    assert torch.allclose(got, reference, atol=1e-6)
    assert not torch.allclose(got, probs[-1], atol=1e-4)
    assert result.val_error == pytest.approx((reference.argmax(1) != data.val.y).float().mean().item())
    assert result.val_error_model == pytest.approx((probs[-1].argmax(1) != data.val.y).float().mean().item())
    assert result.attrs["inference_cost"] == MEMBERS == result.attrs["independent_ensemble.members"]
    assert sorted(result.weights) == [f"independent_ensemble.{m}" for m in range(1, MEMBERS + 1)]


def test_members_are_reproducible_and_paired_across_trial_seeds():
    first = _train()[2].finished
    again = _train()[2].finished
    assert all(_same(a, b) for a, b in zip(first, again))
    other = _train(seed=SEED + 1)[3]
    # Consecutive trial seeds: no member of one trial starts as a member of the next.
    seeds = {member_seed(s, m) for s in range(100) for m in range(1, 9)}
    assert len(seeds) == 100 * 8
    assert not _same(_train()[3].before[PER_MEMBER], other.before[0])


def test_setup_forgets_an_earlier_run_and_sets_alpha0():
    data = tiny_data()
    trick = IndependentEnsemble(members=2, alpha0=0.3)
    train_tiny([trick], "10steps", data=data)
    assert len(trick.finished) == 2
    run = run_for(tiny_model(data), base_lr=0.05)
    trick.setup(run)
    assert run.base_lr == 0.3 and not trick.finished
    assert trick.predict(run, data.val.x) is None
    assert trick.lr_factor(0.5) == snapshot_lr_factor(0.5, 2) == pytest.approx(1.0)
