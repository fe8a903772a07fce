"""Tests of the EMA trick: the average follows the recorded weights with a half-life in progress, and predicts."""

from __future__ import annotations

import math

import pytest
import torch

from automl.testing import run_for, tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.ema import Ema, ema_decay

pytestmark = pytest.mark.usefixtures("one_thread")


class WeightRecorder(Trick):
    """(step, progress, weights and buffers) after each step, and whether ``trick.predict`` abstained."""

    name = "weight_recorder"

    def __init__(self, trick):
        self.trick = trick
        self.after: list[tuple[int, float, dict[str, torch.Tensor]]] = []
        self.abstained: list[bool] = []

    def on_step_end(self, run, loss):
        self.after.append((run.step, run.progress, {k: v.detach().clone() for k, v in run.model.state_dict().items()}))
        self.abstained.append(self.trick.predict(run, run.data.val.x[:4]) is None)


def _floats(state):
    return {k: v for k, v in state.items() if v.is_floating_point()}


def _reference_ema(after, half_life, every):
    """The EMA written out: start at the first averaged weights, then ema = d * ema + (1 - d) * w."""
    ema, last = None, None
    for step, progress, state in after:
        if step % every:
            continue
        if ema is None:
            ema = {k: v.clone() for k, v in _floats(state).items()}
        else:
            d = 0.5 ** ((progress - last) / half_life)
            ema = {k: d * ema[k] + (1 - d) * v for k, v in _floats(state).items()}
        last = progress
    return ema


def _close(a, b, atol=1e-6):
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol) for k in a)


def _run(half_life, budget="20steps", every=1):
    data = tiny_data()
    model = tiny_model(data)
    trick = Ema(half_life=half_life, every=every)
    rec = WeightRecorder(trick)
    result = train_tiny([trick, rec], budget, data=data, model=model, lr=0.1)
    return data, model, trick, rec, result


def _model_with(data, state):
    model = tiny_model(data, seed=123)
    missing = model.load_state_dict(state, strict=False)
    assert not missing.missing_keys or all(k.endswith("num_batches_tracked") for k in missing.missing_keys)
    return model.eval()


def test_decay_halves_the_weight_every_half_life():
    assert ema_decay(0.1, 0.1) == pytest.approx(0.5)
    assert ema_decay(0.01, 0.1) ** 10 == pytest.approx(0.5)
    assert ema_decay(0.0, 0.1) == 1.0
    assert ema_decay(-0.01, 0.1) == 1.0
    n, half_life = 1000, 0.005
    # A budget of n steps gives the fixed decay of timm's ModelEmaV2.
    assert ema_decay(1 / n, half_life) == pytest.approx(0.5 ** (1 / (n * half_life)))
    assert ema_decay(1 / n, 1e-9) == 0.0


@pytest.mark.parametrize(("half_life", "budget", "every"), [(0.1, "20steps", 1), (0.2, "24steps", 3), (0.3, "2ep", 1)])
def test_average_equals_a_hand_computed_ema_of_the_recorded_weights(half_life, budget, every):
    data, model, trick, rec, result = _run(half_life, budget, every)
    reference = _reference_ema(rec.after, half_life, every)
    averaged = trick.averaged.module.state_dict()
    assert _close(_floats(averaged), reference)
    assert int(trick.averaged.n_averaged) == result.steps // every == result.attrs["ema.updates"]
    # BatchNorm statistics are averaged too, not copied from the model.
    assert not torch.allclose(averaged["0.1.running_mean"], model.state_dict()["0.1.running_mean"], atol=1e-4)
    # Neither the final nor the first weights: a real average.
    assert not _close(_floats(averaged), _floats(model.state_dict()), atol=1e-4)
    assert not _close(_floats(averaged), _floats(rec.after[every - 1][2]), atol=1e-4)
    # No prediction until the first update, the average's from then on.
    assert rec.abstained == [step < every for step, _, _ in rec.after]


def test_predictions_are_the_averaged_model_s():
    half_life = 0.15
    data, model, trick, rec, result = _run(half_life)
    reference = _model_with(data, _reference_ema(rec.after, half_life, 1))
    x = data.val.x
    with torch.no_grad():
        expected = reference(x)
        alone = model.eval()(x)
    got = trick.predict(run_for(model, autocast=None), x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, alone, atol=1e-3)
    assert result.val_error == pytest.approx((expected.argmax(1) != data.val.y).float().mean().item())
    assert result.val_error_model == pytest.approx((alone.argmax(1) != data.val.y).float().mean().item())
    assert result.attrs["inference_cost"] == 1


def test_a_vanishing_half_life_tracks_the_model():
    data, model, trick, rec, result = _run(1e-9)
    assert _close(_floats(trick.averaged.module.state_dict()), _floats(model.state_dict()), atol=0)
    x = data.val.x
    with torch.no_grad():
        assert torch.equal(trick.predict(run_for(model, autocast=None), x), model.eval()(x))
    assert result.val_error == result.val_error_model


def test_an_endless_half_life_keeps_the_first_update():
    data, model, trick, rec, result = _run(1e9)
    first = _floats(rec.after[0][2])
    assert _close(_floats(trick.averaged.module.state_dict()), first, atol=1e-6)
    assert not _close(first, _floats(model.state_dict()), atol=1e-4)


def test_setup_forgets_an_earlier_run():
    data, model, trick, rec, result = _run(0.1, "4steps")
    assert trick.averaged is not None
    run = run_for(model, autocast=None)
    trick.setup(run)
    assert trick.averaged is None
    assert trick.predict(run, data.val.x) is None


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"half_life": 0.0}, "half_life"), ({"half_life": -0.1}, "half_life"), ({"half_life": math.inf}, "half_life"),
    ({"every": 0}, "every"), ({"every": 1.5}, "every"), ({"every": True}, "every"),
])
def test_constructor_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Ema(**kwargs)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick, option_names

    rec = SpaceRecorder("ema")
    trick = build_trick(Ema, rec)
    dist = rec.params["half_life"]
    assert dist.log and 0 < dist.low <= trick.half_life <= dist.high < 1
    assert option_names(Ema, {"half_life": trick.half_life}) == ["every"]
    assert build_trick(Ema, SpaceRecorder("ema"), {"every": 4}).every == 4


def test_predict_runs_under_the_run_s_autocast():
    data, model, trick, rec, result = _run(0.1, "4steps")
    run = run_for(model, autocast={"device_type": "cpu", "dtype": torch.bfloat16})
    x = data.val.x
    low = trick.predict(run, x)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), trick.predict(run_for(model, autocast=None), x), atol=0.1)


def test_the_average_is_kept_for_the_artifact_store():
    trick = Ema(half_life=0.2)
    result = train_tiny([trick], "16steps", lr=0.1)
    assert list(result.weights) == ["ema"]
    for (name, kept), averaged in zip(result.weights["ema"].items(), trick.averaged.module.state_dict().values()):
        assert torch.equal(kept, averaged), name
