"""Tests of no-bias-decay: weight decay on conv and linear weights only, not on biases and BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.testing import tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.no_bias_decay import NoBiasDecay, decay_options

pytestmark = pytest.mark.usefixtures("one_thread")

WD = 0.01


def _decayed_names(model):
    """The conv and linear weights, by module type: the independent reference for the ndim test."""
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


class GroupRecorder(Trick):
    """The weight decay of every parameter as the optimizer holds it at the first step."""

    name = "group_recorder"

    def on_step_start(self, run):
        if run.step == 0:
            names = {id(p): n for n, p in run.model.named_parameters()}
            self.groups = [{"weight_decay": g["weight_decay"], "lr_scale": g.get("lr_scale", 1.0),
                            "params": [names[id(p)] for p in g["params"]]} for g in run.optimizer.param_groups]

    @property
    def decay_of(self):
        return {n: g["weight_decay"] for g in self.groups for n in g["params"]}


class HalfLRHead(Trick):
    """Another trick that regroups (a per-layer LR scale), set up after no-bias-decay."""

    name = "half_lr_head"

    def setup(self, run):
        head = f"{len(run.model) - 1}."
        run.regroup(lambda name, p: {"lr_scale": 0.5} if name.startswith(head) else {})


class ZeroGradients(Trick):
    """A criterion with zero gradients everywhere, so that an SGD step applies the weight decay alone."""

    name = "zero_gradients"

    def setup(self, run):
        run.criterion = lambda logits, y: (logits * 0).sum()


@pytest.mark.parametrize("arch", ["small_cnn", "resnet20"])
def test_groups_decay_exactly_the_conv_and_linear_weights(arch):
    data = tiny_data()
    model = tiny_model(data, model=arch)
    rec = GroupRecorder()
    train_tiny([NoBiasDecay(), rec], "1steps", data=data, model=model, weight_decay=WD)
    decay = rec.decay_of
    assert sorted(decay) == sorted(n for n, _ in model.named_parameters())  # each parameter exactly once
    decayed = _decayed_names(model)
    assert decayed and len(decayed) < len(decay)
    for name, wd in decay.items():
        assert wd == (WD if name in decayed else 0.0), name
    assert {g["weight_decay"] for g in rec.groups} == {WD, 0.0}


def test_one_step_with_zero_gradients_shrinks_only_the_decayed_weights():
    lr = 0.1
    data = tiny_data()
    runs = {}
    for on in (True, False):
        model = tiny_model(data)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        tricks = [ZeroGradients(), *([NoBiasDecay()] if on else [])]
        train_tiny(tricks, "1steps", data=data, model=model, lr=lr, momentum=0.0, weight_decay=WD)
        runs[on] = before, dict(model.named_parameters())
    decayed = _decayed_names(model)
    before, after = runs[True]
    for name, p in after.items():
        if name in decayed:
            assert torch.allclose(p, before[name] * (1 - lr * WD), rtol=1e-6, atol=0), name
            assert not torch.equal(p, before[name]), name
        else:
            assert torch.equal(p, before[name]), name
    # Without the trick the same step shrinks the biases and BatchNorm gammas too.
    before, after = runs[False]
    for name, p in after.items():
        if name not in decayed and before[name].abs().sum() > 0:
            assert torch.allclose(p, before[name] * (1 - lr * WD), rtol=1e-6, atol=0), name


def test_composes_with_another_regrouping():
    data = tiny_data()
    model = tiny_model(data)
    rec = GroupRecorder()
    train_tiny([NoBiasDecay(), HalfLRHead(), rec], "1steps", data=data, model=model, weight_decay=WD)
    n_head = len(model) - 1
    head = {f"{n_head}.weight", f"{n_head}.bias"}
    decayed = _decayed_names(model)
    assert len(rec.groups) == 4  # {decay, no decay} x {head, body}
    for group in rec.groups:
        for name in group["params"]:
            assert group["weight_decay"] == (WD if name in decayed else 0.0), name
            assert group["lr_scale"] == (0.5 if name in head else 1.0), name


def test_decay_options_go_by_number_of_dimensions():
    assert decay_options("w", nn.Parameter(torch.zeros(3, 3, 3, 3))) == {}
    assert decay_options("w", nn.Parameter(torch.zeros(4, 5))) == {}
    for shape in [(4,), ()]:
        assert decay_options("w", nn.Parameter(torch.zeros(shape))) == {"weight_decay": 0.0}


def test_no_search_space_and_no_parameters():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("no_bias_decay")
    assert isinstance(build_trick(NoBiasDecay, rec), NoBiasDecay)
    assert rec.params == {}
    with pytest.raises(TypeError, match="no parameters"):
        NoBiasDecay(weight_decay=0.0)
