"""Tests of the built-in models (plugins/models.py) and their conventions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from automl.errors import UserError
from automl.train.models import build_model, check_model_name
from automl_plugins.models import MODELS, ResidualBlock

# resnet110 is only run on a batch of two, to keep the file fast.
FAST = ["small_cnn", "resnet9", "resnet20", "resnet32", "resnet56"]
BLOCKS = {"resnet20": 9, "resnet32": 15, "resnet56": 27, "resnet110": 54, "resnet9": 2, "small_cnn": 0}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry():
    assert set(MODELS) == {"small_cnn", "resnet9", "resnet20", "resnet32", "resnet56", "resnet110"}


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize(("channels", "size", "classes"), [(1, 8, 10), (3, 32, 7)])
def test_output_shape(name, channels, size, classes):
    torch.manual_seed(0)
    model = build_model(name, in_channels=channels, num_classes=classes, width=0.5)
    out = model(torch.randn(4, channels, size, size))
    assert out.shape == (4, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (3, 32)])
def test_resnet110_forward(channels, size):
    model = build_model("resnet110", in_channels=channels, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", list(MODELS))
def test_width_multiplier_scales_the_parameter_count(name):
    base = _count(build_model(name, in_channels=3, num_classes=10))
    double = _count(build_model(name, in_channels=3, num_classes=10, width=2.0))
    half = _count(build_model(name, in_channels=3, num_classes=10, width=0.5))
    # Convolutions dominate and grow with the square of the width.
    assert 3.5 < double / base < 4.05
    assert 0.2 < half / base < 0.3


def test_parameter_counts_match_the_papers():
    # He et al. 2016 report 0.27M, 0.46M, 0.85M and 1.7M (with option A shortcuts; B adds a little).
    millions = {n: _count(build_model(n, in_channels=3, num_classes=10)) / 1e6 for n in MODELS}
    assert millions["resnet20"] == pytest.approx(0.27, abs=0.01)
    assert millions["resnet32"] == pytest.approx(0.46, abs=0.02)
    assert millions["resnet56"] == pytest.approx(0.85, abs=0.02)
    assert millions["resnet110"] == pytest.approx(1.7, abs=0.05)
    assert millions["resnet9"] == pytest.approx(6.57, abs=0.05)


@pytest.mark.parametrize("name", list(MODELS))
def test_residual_blocks_and_layout_convention(name):
    model = build_model(name, in_channels=3, num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == BLOCKS[name]
    for block in blocks:
        if block.relu_on_branch:
            assert block.last_bn is None
            continue
        assert isinstance(block.last_bn, nn.BatchNorm2d)
        assert any(block.last_bn is m for m in block.modules())
    children = list(model.children())
    # Blocks are top-level children, not nested in stages, and the classifier comes last.
    assert all(any(block is child for child in children) for block in blocks)
    assert isinstance(children[-1], nn.Linear)
    assert children[-1].out_features == 10


def test_zero_last_bn_makes_an_identity_block_an_identity():
    torch.manual_seed(0)
    block = ResidualBlock(8, 8).eval()
    nn.init.zeros_(block.last_bn.weight)
    x = torch.randn(2, 8, 6, 6).relu()  # blocks see post-ReLU inputs
    assert torch.allclose(block(x), x)
    page = ResidualBlock(8, 8, relu_on_branch=True).eval()
    nn.init.zeros_(page.bn2.weight)
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(page(x), x)


def test_last_bn_is_not_registered_twice():
    keys = list(ResidualBlock(4, 4).state_dict())
    assert not any("last_bn" in k for k in keys)
    assert len(keys) == len(set(keys))


def test_unknown_model_or_option_names_the_valid_ones():
    valid = "resnet110, resnet20, resnet32, resnet56, resnet9, small_cnn"
    with pytest.raises(UserError, match=rf"unknown model 'resnet18'; valid: {valid}"):
        build_model("resnet18", in_channels=3, num_classes=10)
    with pytest.raises(UserError, match=r"unknown option 'depth' for model 'resnet20'; valid: width"):
        build_model("resnet20", in_channels=3, num_classes=10, depth=3)
    with pytest.raises(UserError, match="width"):
        build_model("small_cnn", in_channels=3, num_classes=10, width=0)


def test_the_form_check_is_a_value_error_for_validators():
    assert check_model_name("resnet9") == "resnet9"
    assert check_model_name("torchvision:resnet18") == "torchvision:resnet18"
    for bad in ("", "timm:", ":build", "mymodels: "):
        with pytest.raises(ValueError, match=r"must be a model's name, torchvision:NAME, timm:NAME or "):
            check_model_name(bad)


def test_small_cnn_learns_a_tiny_batch():
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=1, num_classes=10)
    x, y = torch.randn(16, 1, 8, 8), torch.arange(16) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["small_cnn", "resnet9", "resnet20"])
def test_channels_last_and_autocast(name):
    torch.manual_seed(0)
    model = build_model(name, in_channels=3, num_classes=10, width=0.25)
    x = torch.randn(4, 3, 16, 16)
    reference = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, reference, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x.contiguous(memory_format=torch.channels_last))
    assert mixed.shape == (4, 10)
    mixed.float().sum().backward()
