"""Tests of gradient clipping: the gradient the optimizer applies has norm at most max_norm at every step,
also after another trick regroups the optimizer, and under a GradScaler on a GPU."""

from __future__ import annotations

import pytest
import torch

from automl.testing import tiny_data, tiny_model, train_tiny, try_trick
from automl.trick import Trick
from automl_plugins.grad_clip import GradClip, clip_grad_norm
from automl_plugins.no_bias_decay import NoBiasDecay

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_NORM = 0.05  # well below the tiny model's gradient norms, so every step is clipped


class GradNorms(Trick):
    """After grad_clip: the global gradient norm the optimizer is about to apply, at every step."""

    name = "grad_norms"
    order = 100

    def __init__(self):
        self.norms: list[float] = []

    def after_backward(self, run):
        grads = [p.grad for g in run.optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.float().norm() for g in grads])).item())


class Regroups(Trick):
    """Rebuilds the optimizer after grad_clip's setup would have run (an optimizer pre-hook would be lost)."""

    name = "regroups"
    order = 50

    def setup(self, run):
        run.regroup(lambda name, p: {"lr_scale": 0.5} if p.ndim <= 1 else {})


def test_clip_grad_norm_scales_to_the_max_and_keeps_the_direction():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    params[0].grad, params[1].grad = torch.tensor([3.0, 0.0, 0.0]), torch.full((2, 2), 2.0)
    before = clip_grad_norm(params, 1.0)
    assert before.item() == pytest.approx(5.0)
    assert torch.cat([p.grad.flatten() for p in params]).norm().item() == pytest.approx(1.0, rel=1e-5)
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.0, 0.0], rel=1e-5)
    clip_grad_norm(params, 10.0)  # already below: untouched
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.0, 0.0], rel=1e-5)


def test_without_clipping_the_norms_exceed_the_max():
    seen = GradNorms()
    train_tiny([seen], "10steps")
    assert len(seen.norms) == 10 and min(seen.norms) > MAX_NORM


@pytest.mark.parametrize("others", [[], [Regroups()], [NoBiasDecay()]], ids=["alone", "regrouped", "no_bias_decay"])
def test_every_step_applies_a_gradient_of_norm_at_most_the_max(others):
    seen = GradNorms()
    trick, result = try_trick(GradClip, "10steps", params={"max_norm": MAX_NORM}, others=[*others, seen])
    assert result.steps == len(seen.norms) == 10
    assert max(seen.norms) <= MAX_NORM * (1 + 1e-4)
    assert min(seen.norms) == pytest.approx(MAX_NORM, rel=1e-3)  # clipped, not zeroed


def test_the_clipped_gradient_is_the_one_the_optimizer_steps():
    data = tiny_data()
    clipped, plain = tiny_model(data), tiny_model(data)
    train_tiny([GradClip(1e-8)], "3steps", data=data, model=clipped, momentum=0.0, weight_decay=0.0)
    # A gradient of norm 1e-8 times the LR moves no weight by more than 1e-8.
    for a, b in zip(clipped.parameters(), plain.parameters()):
        assert (a - b).abs().max().item() < 1e-7


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a GradScaler needs a CUDA GPU")
def test_under_a_grad_scaler_the_norms_are_of_the_unscaled_gradients():
    from automl.budget import Budget
    from automl.testing import tiny_settings
    from automl.train.loop import train
    from automl_plugins.mixed_precision import MixedPrecision

    seen = GradNorms()
    data = tiny_data(device="cuda")
    result = train(tiny_model(data), data, tiny_settings(), Budget.parse("10steps"), device="cuda",
                   tricks=[MixedPrecision("fp16"), GradClip(MAX_NORM), seen])
    assert result.attrs["mixed_precision.dtype"] == "fp16" and len(seen.norms) == 10
    # The scaler starts at 2**16: scaled gradients would be far above the max.
    finite = [n for n in seen.norms if torch.isfinite(torch.tensor(n))]
    assert finite and max(finite) <= MAX_NORM * (1 + 1e-3)
