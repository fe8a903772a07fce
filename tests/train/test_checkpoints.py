"""A run resumed from a checkpoint ends exactly as the run that was never stopped (issue 14, items 1 and 2).

Each checkpoint goes through ``torch.save`` and ``torch.load(weights_only=True)``, as it does in a study.
"""

from __future__ import annotations

import io

import pytest
import torch

from automl.budget import Budget
from automl.errors import TrialFailed, UserError
from automl.testing import tiny_builder, tiny_data, tiny_model, tiny_settings
from automl.train.checkpoints import BAD_CHECKPOINT, DEFAULT_EVERY, Checkpointing, Every, packed, unpacked
from automl.train.loop import train
from automl.trick import Trick
from automl_plugins.cutout import Cutout
from automl_plugins.ema import Ema
from automl_plugins.freezeout import FreezeOut
from automl_plugins.mixup import Mixup
from automl_plugins.snapshot_ensemble import SnapshotEnsemble
from automl_plugins.swa import Swa

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 40
"""Steps of every run: the tiny data set has 8 batches of 16, so the runs cross passes."""


def stateful_tricks() -> list[Trick]:
    # Not a study's combination (snapshot_ensemble and freezeout both own the LR schedule), but the loop runs
    # every hook of each, so each one's state must come back.
    return [Mixup(alpha=0.4), Cutout(size=0.25), Ema(half_life=0.05), FreezeOut(t0=0.5, schedule="linear"),
            SnapshotEnsemble(cycles=4, alpha0=0.1), Swa(fraction=0.5)]


def roundtrip(state: dict) -> dict:
    """``state`` as a study writes it and reads it back: packed, saved, loaded and unpacked."""
    buffer = io.BytesIO()
    torch.save(packed(state), buffer)
    buffer.seek(0)
    return unpacked(torch.load(buffer, weights_only=True))


def run(tricks: list[Trick], *, every: Every | None = None, resume: dict | None = None, saved: list | None = None,
        **settings):
    data = tiny_data()
    saved = [] if saved is None else saved
    checkpointing = Checkpointing(save=lambda state: saved.append(roundtrip(state)), every=every, resume=resume)
    result = train(tiny_model(data, seed=3), data, tiny_settings(augment=True, flip=True, rungs=3, **settings),
                   Budget(STEPS, "steps"), tricks=tricks, seed=3, build_model=tiny_builder(data),
                   checkpointing=checkpointing)
    return result, saved


def assert_same(a, b) -> None:
    assert a.steps == b.steps and a.epochs == b.epochs and a.history == b.history
    assert (a.val_error, a.val_error_model, a.train_loss) == (b.val_error, b.val_error_model, b.train_loss)
    assert a.attrs == b.attrs
    assert set(a.weights) == set(b.weights)
    for name in a.weights:
        for key, value in a.weights[name].items():
            assert torch.equal(value, b.weights[name][key]), (name, key)


def test_every_fraction_saves_at_each_tenth_and_resuming_any_of_them_ends_bit_identical():
    plain, _ = run(stateful_tricks())
    again, saved = run(stateful_tricks(), every=Every(fraction=DEFAULT_EVERY))
    assert_same(plain, again)  # saving changes nothing
    assert [s["run"]["step"] for s in saved] == [4 * k for k in range(1, 10)]
    for state in (saved[2], saved[6]):  # mid-pass and across rungs, after freezes and snapshots
        resumed, _ = run(stateful_tricks(), resume=state)
        assert resumed.resumed_seconds == pytest.approx(state["loop"]["spent_seconds"])
        assert_same(plain, resumed)


@pytest.mark.parametrize("trick", [Ema, FreezeOut, SnapshotEnsemble, Mixup, Swa])
def test_a_trick_that_skips_its_load_state_dict_changes_the_resumed_run(trick, monkeypatch):
    """The resumed run differs when one trick does not take back its state: each restore is needed."""
    plain, _ = run(stateful_tricks())
    _, saved = run(stateful_tricks(), every=Every(fraction=0.25))
    state = saved[2]  # at step 30: after the first freeze, two snapshots, and inside SWA's window
    monkeypatch.setattr(trick, "load_state_dict", Trick.load_state_dict)
    try:
        resumed, _ = run(stateful_tricks(), resume=state)
    except TrialFailed as exc:  # FreezeOut's optimizer groups no longer fit
        assert exc.reason == BAD_CHECKPOINT
        return
    with pytest.raises(AssertionError):
        assert_same(plain, resumed)


def test_a_checkpoint_is_taken_when_a_stop_signal_is_pending(monkeypatch):
    import automl.train.checkpoints as checkpoints

    pending = iter([False] * 9 + [True] + [False] * 100)
    monkeypatch.setattr(checkpoints, "stop_pending", lambda: next(pending))
    _, saved = run([Ema(half_life=0.05)])
    assert [s["run"]["step"] for s in saved] == [9]


def test_a_checkpoint_that_does_not_fit_the_run_fails_it_with_the_reason():
    _, saved = run([Ema(half_life=0.05)], every=Every(fraction=0.5))
    state = saved[0]
    state["model"] = {k: v[..., :1] if v.ndim else v for k, v in state["model"].items()}
    with pytest.raises(TrialFailed, match="does not fit this run") as caught:
        run([Ema(half_life=0.05)], resume=state)
    assert caught.value.reason == BAD_CHECKPOINT


@pytest.mark.parametrize("value, budget, expected", [
    (None, "30s", None), (None, "500steps", None), (None, "20m", Every(fraction=DEFAULT_EVERY)),
    ("off", "20m", None), (0.25, "40steps", Every(fraction=0.25)), ("30s", "40steps", Every(seconds=30.0)),
])
def test_checkpoint_every_is_a_fraction_or_device_time_and_off_for_short_trials(value, budget, expected):
    assert Every.of(value, Budget.parse(budget)) == expected


@pytest.mark.parametrize("value", [0, 1.5, "30steps", "soon"])
def test_a_bad_checkpoint_every_is_refused(value):
    with pytest.raises(UserError, match="checkpoint_every|budget"):
        Every.of(value, Budget.parse("20m"))
