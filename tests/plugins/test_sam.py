"""Tests of SAM: two forward and backward passes per step, the second at weights moved by exactly rho,
and the optimizer stepping from the unperturbed weights."""

from __future__ import annotations

import pytest
import torch

from automl.testing import try_trick
from automl.trick import Trick
from automl_plugins.grad_clip import GradClip
from automl_plugins.sam import SAM, ascent_step

pytestmark = pytest.mark.usefixtures("one_thread")

RHO = 0.05


class Passes(Trick):
    """Hooks the model in setup: the flat weights at every forward pass and the number of backward passes."""

    name = "passes"

    def __init__(self):
        self.weights: list[torch.Tensor] = []
        self.backwards = 0
        self.steps_started: list[int] = []

    def setup(self, run):
        model = run.model
        model.register_forward_pre_hook(lambda m, args: self.weights.append(
            torch.cat([p.detach().flatten().clone() for p in m.parameters()])) if m.training else None)
        first = next(model.parameters())
        first.register_hook(lambda grad: setattr(self, "backwards", self.backwards + 1))

    def on_step_start(self, run):
        self.steps_started.append(len(self.weights))


def test_ascent_step_has_norm_rho_along_the_gradient():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0], [4.0]])]
    moves = ascent_step(grads, 0.5)
    assert torch.cat([m.flatten() for m in moves]).norm().item() == pytest.approx(0.5)
    assert moves[0].tolist() == pytest.approx([0.3, 0.0]) and moves[1].flatten().tolist() == pytest.approx([0.0, 0.4])
    assert all(m.abs().sum() == 0 for m in ascent_step([torch.zeros(3)], 0.5))
    assert all(m.abs().sum() == 0 for m in ascent_step([torch.tensor([float("nan")])], 0.5))


def test_two_forward_and_backward_passes_per_step_the_second_at_distance_rho():
    seen = Passes()
    trick, result = try_trick(SAM, "6steps", params={"rho": RHO}, others=[seen])
    assert trick.rho == RHO and result.steps == 6
    assert len(seen.weights) == 12 and seen.backwards == 12
    assert seen.steps_started == [0, 2, 4, 6, 8, 10]  # each step's two passes, before the next step starts
    for step in range(6):
        first, second = seen.weights[2 * step], seen.weights[2 * step + 1]
        assert (second - first).norm().item() == pytest.approx(RHO, rel=1e-4)
        if step:  # the step starts from the weights the last one left, not from the perturbed ones
            assert not torch.equal(first, seen.weights[2 * step - 1])


def test_the_optimizer_steps_from_the_unperturbed_weights():
    # With plain SGD the update is -lr * (gradient at the perturbed weights): the weights move by less than
    # rho plus the step, never keep the perturbation.
    seen = Passes()
    try_trick(SAM, "2steps", params={"rho": 0.5}, others=[seen], momentum=0.0, weight_decay=0.0, lr=1e-6)
    start, perturbed, next_start = seen.weights[0], seen.weights[1], seen.weights[2]
    assert (perturbed - start).norm().item() == pytest.approx(0.5, rel=1e-4)
    assert (next_start - start).norm().item() < 1e-3


def test_after_backward_hooks_still_run_once_per_step_under_sam():
    class Count(Trick):
        name = "count"
        order = 100

        def __init__(self):
            self.calls, self.norms = 0, []

        def after_backward(self, run):
            self.calls += 1
            grads = [p.grad for p in run.model.parameters() if p.grad is not None]
            self.norms.append(torch.stack([g.norm() for g in grads]).norm().item())

    count = Count()
    _, result = try_trick(SAM, "5steps", params={"rho": RHO}, others=[GradClip(0.01), count])
    assert count.calls == result.steps == 5
    assert max(count.norms) <= 0.01 * (1 + 1e-4)
