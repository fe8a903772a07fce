"""Tests of LARS: every layer's update at every step equals a reference computation of algorithm 1 written here,
each layer moves by the same fraction of its norm, and the optimizer stays LARS when other tricks regroup."""

from __future__ import annotations

import pytest
import torch

from automl.testing import train_tiny, try_trick
from automl.trick import Trick
from automl_plugins.lars import LARS, LARSOptimizer, trust_ratio
from automl_plugins.no_bias_decay import NoBiasDecay

pytestmark = pytest.mark.usefixtures("one_thread")


class Updates(Trick):
    """Last of the tricks: per step, each param group's options and, per tensor, the weights before the step,
    the gradient the optimizer is given, and the weights after."""

    name = "updates"
    order = 100

    def __init__(self):
        self.steps: list[list[tuple[dict, list[torch.Tensor], list[torch.Tensor]]]] = []
        self.after: list[list[torch.Tensor]] = []

    def after_backward(self, run):
        self.optimizer = run.optimizer
        self.steps.append([({k: v for k, v in g.items() if k != "params"},
                            [p.detach().clone() for p in g["params"]],
                            [p.grad.detach().clone() for p in g["params"]]) for g in run.optimizer.param_groups])

    def on_step_end(self, run, loss):
        self.after.append([p.detach().clone() for g in run.optimizer.param_groups for p in g["params"]])


def reference_lars(steps) -> list[list[torch.Tensor]]:
    """Algorithm 1 of You et al. 2017, one tensor at a time: the weights after each step, from the recorded
    weights and gradients (velocity carried over from step to step)."""
    velocity: dict[int, torch.Tensor] = {}
    expected = []
    for groups in steps:
        out = []
        i = 0
        for options, weights, grads in groups:
            lr, m, b, eta = options["lr"], options["momentum"], options["weight_decay"], options["trust"]
            for w, g in zip(weights, grads):
                w_norm, g_norm = w.double().norm().item(), g.double().norm().item()
                local = eta * w_norm / (g_norm + b * w_norm) if w_norm > 0 and g_norm > 0 else 1.0
                v = lr * local * (g.double() + b * w.double())
                if i in velocity:
                    v = m * velocity[i] + v
                velocity[i] = v
                out.append((w.double() - v).float())
                i += 1
        expected.append(out)
    return expected


def test_trust_ratio_and_its_zero_cases():
    w, g = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.5])
    assert trust_ratio(w, g, 0.01, 0.0).item() == pytest.approx(0.01 * 5 / 0.5)
    assert trust_ratio(w, g, 0.01, 0.1).item() == pytest.approx(0.01 * 5 / (0.5 + 0.5))
    assert trust_ratio(torch.zeros(2), g, 0.01, 0.0).item() == 1.0
    assert trust_ratio(w, torch.zeros(2), 0.01, 0.0).item() == 1.0


@pytest.mark.parametrize("others", [[], [NoBiasDecay()]], ids=["alone", "no_bias_decay"])
def test_every_layers_update_at_every_step_is_algorithm_1(others):
    seen = Updates()
    trick, result = try_trick(LARS, "6steps", params={"trust": 0.02}, others=[*others, seen],
                              momentum=0.9, weight_decay=5e-4, lr=0.2)
    assert isinstance(seen.optimizer, LARSOptimizer) and result.steps == len(seen.steps) == 6
    assert result.attrs["lars.replaced"] == "SGD"
    decays = {options["weight_decay"] for options, _, _ in seen.steps[0]}
    assert decays == ({0.0, 5e-4} if others else {5e-4})  # no_bias_decay's groups kept their option
    assert {options["momentum"] for options, _, _ in seen.steps[0]} == {0.9}
    expected = reference_lars(seen.steps)
    for step, (got, want) in enumerate(zip(seen.after, expected)):
        for layer, (a, b) in enumerate(zip(got, want)):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), f"step {step}, tensor {layer}"


def test_each_layer_moves_by_the_same_fraction_of_its_norm():
    # Without momentum and weight decay the first step moves each layer by lr * trust * ||w||, whatever its
    # gradient; plain SGD moves the layers by very different fractions.
    def fractions(tricks):
        seen = Updates()
        train_tiny([*tricks, seen], "1steps", momentum=0.0, weight_decay=0.0, lr=0.1)
        before = [w for _, weights, _ in seen.steps[0] for w in weights]
        grads = [g for _, _, grads in seen.steps[0] for g in grads]
        return [((a - w).norm() / w.norm()).item() for w, g, a in zip(before, grads, seen.after[0])
                if w.norm() > 0 and g.norm() > 0]

    lars = fractions([LARS(trust=0.01)])
    assert len(lars) >= 4 and lars == pytest.approx([0.1 * 0.01] * len(lars), rel=1e-4)
    sgd = fractions([])
    assert max(sgd) / min(sgd) > 3


def test_tensors_at_zero_move_by_the_plain_sgd_step():
    data_bias = torch.nn.Parameter(torch.zeros(3))
    data_bias.grad = torch.tensor([1.0, -2.0, 0.5])
    LARSOptimizer([data_bias], lr=0.1, momentum=0.0, trust=0.001).step()
    assert data_bias.detach().tolist() == pytest.approx([-0.1, 0.2, -0.05])


def test_a_regroup_after_it_keeps_lars_and_its_coefficient():
    class Regroups(Trick):
        name = "regroups"
        order = 50

        def setup(self, run):
            run.regroup(lambda name, p: {"lr_scale": 0.5} if p.ndim <= 1 else {})

    seen = Updates()
    train_tiny([LARS(trust=0.05), Regroups(), seen], "2steps")
    assert isinstance(seen.optimizer, LARSOptimizer)
    assert {options["trust"] for options, _, _ in seen.steps[0]} == {0.05}
    assert len(seen.steps[0]) == 2
    expected = reference_lars(seen.steps)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(seen.after[-1], expected[-1]))


@pytest.mark.parametrize("trust", [0.0, -1.0, float("inf"), True])
def test_constructor_rejects_a_trust_coefficient_that_is_not_positive(trust):
    with pytest.raises(ValueError, match="lars trust must be a positive number"):
        LARS(trust=trust)
