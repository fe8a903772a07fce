"""Tests of ghost batch norm: in training every ghost batch is normalised by its own statistics, the running
statistics move towards their mean, and evaluation, the weights and the optimizer are those of plain BatchNorm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automl.testing import tiny_data, tiny_model, train_tiny, try_trick
from automl.trick import Trick
from automl_plugins.ghost_batch_norm import GhostBatchNorm, ghost_batches, use_ghost_batches

pytestmark = pytest.mark.usefixtures("one_thread")


def shifted_batch(n: int = 64, groups: int = 4, c: int = 3) -> torch.Tensor:
    """A batch whose ghost batches (samples g, g + groups, ...) have clearly different means and scales."""
    torch.manual_seed(0)
    x = torch.randn(n, c, 4, 4)
    g = torch.arange(n) % groups
    return x * (1 + g)[:, None, None, None] + 3.0 * g[:, None, None, None]


def trained_bn(c: int = 3) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c, momentum=0.2)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


@pytest.mark.parametrize(("n", "size", "groups"), [(64, 16, 4), (512, 32, 16), (48, 32, 1), (48, 16, 3),
                                                    (100, 32, 2), (16, 32, 1), (96, 8, 12)])
def test_ghost_batches_are_equal_and_hold_at_least_size(n, size, groups):
    assert ghost_batches(n, size) == groups
    assert n % groups == 0 and (groups == 1 or n // groups >= size)


def test_each_ghost_batch_is_normalised_by_its_own_statistics():
    x = shifted_batch()
    bn = trained_bn()
    plain = trained_bn()
    plain.load_state_dict(bn.state_dict())
    r_mean, r_var = bn.running_mean.clone(), bn.running_var.clone()
    assert use_ghost_batches(nn.Sequential(bn), 16) == 1
    with torch.no_grad():
        out = bn(x)
    means, variances = [], []
    for g in range(4):
        ghost = x[g::4]
        expected = F.batch_norm(ghost, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
        assert torch.allclose(out[g::4], expected, atol=1e-5)
        normalised = (out[g::4] - bn.bias[:, None, None]) / bn.weight[:, None, None]
        assert normalised.mean(dim=(0, 2, 3)).abs().max() < 1e-5
        assert (normalised.var(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-3
        means.append(ghost.mean(dim=(0, 2, 3)))
        variances.append(ghost.var(dim=(0, 2, 3), unbiased=True))
    # Not what BatchNorm over the whole batch gives.
    assert (out - plain(x)).abs().max() > 0.5
    # One update of the running statistics, towards the mean of the ghost batches' statistics.
    m = bn.momentum
    assert torch.allclose(bn.running_mean, (1 - m) * r_mean + m * torch.stack(means).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, (1 - m) * r_var + m * torch.stack(variances).mean(0), atol=1e-4)
    assert int(bn.num_batches_tracked) == 1


def test_evaluation_and_small_batches_are_plain_batch_norm():
    x = shifted_batch(n=16)
    bn, plain = trained_bn(), trained_bn()
    plain.load_state_dict(bn.state_dict())
    use_ghost_batches(nn.Sequential(bn), 16)
    assert torch.equal(bn(x), plain(x))  # one ghost batch: the whole batch
    assert torch.equal(bn.running_mean, plain.running_mean)
    bn.eval(), plain.eval()
    x = shifted_batch()
    assert torch.equal(bn(x), plain(x))


def test_the_modules_keep_their_parameters_buffers_and_keys():
    data = tiny_data()
    model = tiny_model(data, model="resnet20")
    before = {name: p for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    changed = use_ghost_batches(model, 8)
    assert changed == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    assert {name: p for name, p in model.named_parameters()} == before  # the very same tensors
    assert list(model.state_dict()) == keys
    plain = tiny_model(data, model="resnet20")
    plain.load_state_dict(model.state_dict())


class GhostStatistics(Trick):
    """Hooks every BatchNorm in setup (after ghost_batch_norm's) and reads the output of each training forward,
    undone of the affine part: per ghost batch, the largest |mean| and |variance - 1| of a channel, and how far
    it is from the input normalised by the whole batch's statistics."""

    name = "ghost_statistics"
    order = 100

    def __init__(self, groups: int):
        self.groups = groups
        self.worst_mean = self.worst_var = 0.0
        self.from_whole_batch = 0.0
        """The largest difference from the same output normalised by the whole batch's statistics."""
        self.calls = 0

    def setup(self, run):
        for module in run.model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.register_forward_hook(self._check)

    def _check(self, bn, args, out):
        if not bn.training:
            return
        self.calls += 1
        z = ((out - bn.bias[:, None, None]) / bn.weight[:, None, None]).detach()
        for g in range(self.groups):
            ghost = z[g::self.groups]
            self.worst_mean = max(self.worst_mean, ghost.mean(dim=(0, 2, 3)).abs().max().item())
            var = ghost.var(dim=(0, 2, 3), unbiased=False)
            self.worst_var = max(self.worst_var, (var - 1).abs().max().item())
        x = args[0].detach()
        whole = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / (x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
                                                            + bn.eps).sqrt()
        self.from_whole_batch = max(self.from_whole_batch, (z - whole).abs().max().item())


def test_in_training_every_layer_normalises_every_ghost_batch_by_its_own_statistics():
    seen = GhostStatistics(groups=4)
    trick, result = try_trick(GhostBatchNorm, "6steps", params={"size": 8}, others=[seen], batch_size=32)
    assert trick.size == 8 and result.steps == 6
    layers = result.attrs["ghost_batch_norm.layers"]
    assert layers > 0 and seen.calls == 6 * layers
    assert seen.worst_mean < 1e-4 and seen.worst_var < 2e-2  # eps = 1e-5 keeps the variance just below 1
    # Not normalised as one batch: the ghost batches' statistics differ from the whole batch's.
    assert seen.from_whole_batch > 0.1


def test_without_the_trick_the_ghost_batches_are_not_normalised_apart():
    seen = GhostStatistics(groups=4)
    train_tiny([seen], "3steps", batch_size=32)
    assert seen.worst_mean > 1e-2 and seen.from_whole_batch < 1e-3


def test_keeps_a_channels_last_batch_channels_last():
    bn = trained_bn(8)
    use_ghost_batches(nn.Sequential(bn), 4)
    x = torch.randn(16, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    out = bn(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out[1::4], F.batch_norm(x[1::4], None, None, bn.weight, bn.bias, True), atol=1e-5)


@pytest.mark.parametrize("size", [1, 0, 8.0, True])
def test_constructor_rejects_a_ghost_batch_below_two(size):
    with pytest.raises(ValueError, match="ghost_batch_norm size must be an integer >= 2"):
        GhostBatchNorm(size=size)
