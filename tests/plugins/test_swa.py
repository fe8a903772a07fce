"""Tests of SWA: the mean of the weights over exactly the last fraction of the budget, with BatchNorm recomputed."""

from __future__ import annotations


import pytest
import torch

from automl.testing import run_for, tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.swa import Swa, averaging

pytestmark = pytest.mark.usefixtures("one_thread")


class WeightRecorder(Trick):
    """(progress, parameters) after each step, and whether ``trick.predict`` abstained there."""

    name = "weight_recorder"

    def __init__(self, trick):
        self.trick = trick
        self.after: list[tuple[float, dict[str, torch.Tensor]]] = []
        self.abstained: list[bool] = []

    def on_step_end(self, run, loss):
        self.after.append((run.progress, {k: v.detach().clone() for k, v in run.model.named_parameters()}))
        self.abstained.append(self.trick.predict(run, run.data.val.x[:4]) is None)


def _run(fraction, budget="40steps", every=1, batch_size=16):
    data = tiny_data()
    model = tiny_model(data)
    trick = Swa(fraction=fraction, every=every)
    rec = WeightRecorder(trick)
    result = train_tiny([trick, rec], budget, data=data, model=model, lr=0.1, batch_size=batch_size)
    return data, model, trick, rec, result


def _mean(states):
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}


def _close(a, b, atol=1e-6):
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol) for k in a)


def _bns(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_window_is_the_last_fraction():
    assert not averaging(0.74, 0.25)
    assert averaging(0.75, 0.25) and averaging(0.9, 0.25) and averaging(1.0, 0.25)
    assert averaging(0.0, 1.0)
    # 28 / 40 is a hair off 1 - 0.3 in floating point; the step still starts the window.
    assert averaging(28 / 40 - 1e-15, 0.3)
    assert not averaging(27 / 40, 0.3)


@pytest.mark.parametrize(("fraction", "budget", "every", "window"),
                         [(0.25, "40steps", 1, 10), (0.3, "40steps", 3, 12), (0.5, "2ep", 1, 8)])
def test_average_is_the_mean_over_exactly_the_last_fraction(fraction, budget, every, window):
    data, model, trick, rec, result = _run(fraction, budget, every)
    inside = [i for i, (p, _) in enumerate(rec.after) if p >= 1 - fraction - 1e-9]
    assert len(inside) == window == round(fraction * result.steps)
    assert inside == list(range(result.steps - window, result.steps))
    sampled = inside[every - 1::every]
    assert int(trick.averaged.n_averaged) == len(sampled) == result.attrs["swa.updates"] == window // every
    averaged = dict(trick.averaged.module.named_parameters())
    assert _close(averaged, _mean([rec.after[i][1] for i in sampled]))
    # Not the final weights, and not a mean that reaches back one step before the window.
    assert not _close(averaged, dict(model.named_parameters()), atol=1e-4)
    assert not _close(averaged, _mean([rec.after[i - 1][1] for i in sampled]), atol=1e-5)
    # No averaging and no prediction of its own before the window.
    first = len(rec.after) - window + every - 1
    assert rec.abstained == [i < first for i in range(len(rec.after))]


def test_batchnorm_statistics_are_recomputed_on_the_training_split():
    data, model, trick, rec, result = _run(0.25)
    swa = trick.averaged.module
    # Copied from the model at the last update, then recomputed: no longer the model's.
    for bn_swa, bn_model in zip(_bns(swa), _bns(model)):
        assert not torch.allclose(bn_swa.running_mean, bn_model.running_mean, atol=1e-4)
        assert not torch.allclose(bn_swa.running_var, bn_model.running_var, atol=1e-4)
        assert bn_swa.num_batches_tracked.item() == len(data.train) // 16
        assert bn_swa.momentum == bn_model.momentum
    # The first BatchNorm by hand: its input is the averaged first conv of the plain training images.
    conv, bn = swa[0][0], swa[0][1]
    means, variances = [], []
    with torch.no_grad():
        for start in range(0, len(data.train), 16):
            h = conv(data.train.x[start:start + 16])
            means.append(h.mean(dim=(0, 2, 3)))
            variances.append(h.var(dim=(0, 2, 3), unbiased=True))
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack(variances).mean(0), rtol=1e-4, atol=1e-6)
    # Recomputing left the averaged weights alone.
    assert _close(dict(swa.named_parameters()), _mean([s for p, s in rec.after if p >= 0.75 - 1e-9]))


def test_predictions_are_the_averaged_model_s():
    data, model, trick, rec, result = _run(0.4)
    swa = trick.averaged.module
    reference = tiny_model(data, seed=123)
    reference.load_state_dict(swa.state_dict())
    x = data.val.x
    with torch.no_grad():
        expected = reference.eval()(x)
        alone = model.eval()(x)
    got = trick.predict(run_for(model, autocast=None), x)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, alone, atol=1e-3)
    assert result.val_error == pytest.approx((expected.argmax(1) != data.val.y).float().mean().item())
    assert result.val_error_model == pytest.approx((alone.argmax(1) != data.val.y).float().mean().item())
    assert result.attrs["inference_cost"] == 1


def test_setup_forgets_an_earlier_run():
    data, model, trick, rec, result = _run(0.5, "4steps")
    assert trick.averaged is not None
    run = run_for(model, autocast=None)
    trick.setup(run)
    assert trick.averaged is None
    assert trick.predict(run, data.val.x) is None


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"fraction": 0.0}, "fraction"), ({"fraction": 1.5}, "fraction"), ({"fraction": float("nan")}, "fraction"),
    ({"every": 0}, "every"), ({"every": 2.0}, "every"),
])
def test_constructor_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Swa(**kwargs)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick, option_names

    rec = SpaceRecorder("swa")
    trick = build_trick(Swa, rec)
    dist = rec.params["fraction"]
    assert (dist.low, dist.high) == (0.1, 0.5)
    assert dist.low <= trick.fraction <= dist.high
    assert option_names(Swa, {"fraction": trick.fraction}) == ["every"]


def test_predict_runs_under_the_run_s_autocast():
    data, model, trick, rec, result = _run(0.5, "4steps")
    run = run_for(model, autocast={"device_type": "cpu", "dtype": torch.bfloat16})
    x = data.val.x
    low = trick.predict(run, x)
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), trick.predict(run_for(model, autocast=None), x), atol=0.1)


def test_the_average_is_kept_for_the_artifact_store():
    trick = Swa(fraction=0.5)
    result = train_tiny([trick], "16steps", lr=0.1)
    assert list(result.weights) == ["swa"]
    for (name, kept), averaged in zip(result.weights["swa"].items(), trick.averaged.module.state_dict().values()):
        assert torch.equal(kept, averaged), name
