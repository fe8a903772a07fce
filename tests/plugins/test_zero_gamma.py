"""Tests of zero-init gamma: every residual block's last BatchNorm starts at 0 and is trained from there."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.testing import tiny_data, tiny_model, train_tiny
from automl_plugins.models import ResidualBlock
from automl.trick import Trick
from automl_plugins.zero_gamma import ZeroGamma, zero_last_gammas

pytestmark = pytest.mark.usefixtures("one_thread")


class GammaRecorder(Trick):
    """The gamma of every BatchNorm at the first step, after every trick's setup."""

    name = "gamma_recorder"

    def on_step_start(self, run):
        if run.step == 0:
            self.start = {n: m.weight.detach().clone() for n, m in run.model.named_modules()
                          if isinstance(m, nn.BatchNorm2d)}


def _last_bn_names(model):
    return {f"{n}.bn2" for n, m in model.named_modules() if isinstance(m, ResidualBlock)}


def _randomise_gammas(model):
    # Away from PyTorch's default of 1, so that "untouched" cannot pass by coincidence.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)


def test_last_gammas_start_at_zero_others_untouched_and_all_are_trained():
    data, blocks = tiny_data(), 9
    model = tiny_model(data, model="resnet20")
    _randomise_gammas(model)
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    last = _last_bn_names(model)
    assert len(last) == blocks and last < set(before)
    rec = GammaRecorder()
    result = train_tiny([ZeroGamma(), rec], "8steps", data=data, model=model, lr=0.05)
    assert result.attrs["zero_gamma.blocks"] == blocks
    assert set(rec.start) == set(before)
    for name, gamma in rec.start.items():
        if name in last:
            assert torch.count_nonzero(gamma) == 0, name
        else:
            assert torch.equal(gamma, before[name]), name
    after = dict(model.named_modules())
    for name in last:
        # Still parameters the optimizer trains: gamma's gradient, sum(grad_out * x_hat), is not 0 at gamma = 0.
        assert torch.count_nonzero(after[name].weight) == after[name].weight.numel(), name


PAGE_BLOCK_HAS_LAST_BN = ResidualBlock(4, 4, relu_on_branch=True).last_bn is not None


@pytest.mark.skipif(PAGE_BLOCK_HAS_LAST_BN, reason="needs plugins/models.py to give relu_on_branch blocks "
                    "last_bn = None: a ReLU after a zero-gamma BN has zero gradient, so the branch would stay dead")
def test_no_residual_branch_is_left_dead():
    # In ResNet-9's blocks a ReLU follows last_bn: at gamma = beta = 0 its input is exactly 0, where its
    # gradient is 0, so gamma, beta and the whole branch would never train. Such blocks must not be zeroed.
    data = tiny_data()
    model = tiny_model(data, model="resnet9")
    result = train_tiny([ZeroGamma()], "8steps", data=data, model=model, lr=0.05)
    assert result.attrs["zero_gamma.blocks"] == 0
    for block in (m for m in model.modules() if isinstance(m, ResidualBlock)):
        assert torch.count_nonzero(block.bn2.weight) > 0


def test_without_the_trick_the_last_gammas_are_not_zero():
    data = tiny_data()
    rec = GammaRecorder()
    model = tiny_model(data, model="resnet20")
    train_tiny([rec], "1steps", data=data, model=model)
    assert all(torch.count_nonzero(rec.start[n]) > 0 for n in _last_bn_names(model))


def test_a_model_without_residual_blocks_is_left_unchanged():
    data = tiny_data()
    model = tiny_model(data, model="small_cnn")
    _randomise_gammas(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert zero_last_gammas(model) == 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    result = train_tiny([ZeroGamma()], "1steps", data=data, model=tiny_model(data, model="small_cnn"))
    assert result.attrs["zero_gamma.blocks"] == 0


def test_a_last_bn_without_affine_weight_is_skipped():
    block = ResidualBlock(4, 4)
    block.bn2 = nn.BatchNorm2d(4, affine=False)
    assert zero_last_gammas(nn.Sequential(block, ResidualBlock(4, 4))) == 1


def test_no_search_space_and_no_parameters():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("zero_gamma")
    assert isinstance(build_trick(ZeroGamma, rec), ZeroGamma)
    assert rec.params == {}
    with pytest.raises(TypeError, match="no parameters"):
        ZeroGamma(gamma=0.0)
