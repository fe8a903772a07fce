"""Tests of label smoothing: the criterion trains against ``(1 - eps) * targets + eps / K``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from automl.testing import tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.label_smoothing import LabelSmoothing, smooth_targets

K = 10

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(logits, targets, epsilon):
    """Cross-entropy against the smoothed distribution, written out."""
    return -(smooth_targets(targets, logits.shape[1], epsilon) * logits.log_softmax(dim=1)).sum(dim=1).mean()


def _soft(n, generator):
    return torch.randn(n, K, generator=generator).softmax(dim=1)


def test_smooth_targets_by_hand():
    eps = 0.2
    y = torch.tensor([0, 3, 9])
    smoothed = smooth_targets(y, K, eps)
    assert smoothed.shape == (3, K)
    for row, label in zip(smoothed, y):
        for k in range(K):
            expected = 1 - eps + eps / K if k == label else eps / K
            assert row[k].item() == pytest.approx(expected)
    soft = _soft(4, torch.Generator().manual_seed(0))
    assert torch.allclose(smooth_targets(soft, K, eps), soft * (1 - eps) + eps / K)
    assert torch.allclose(smooth_targets(soft, K, eps).sum(1), torch.ones(4))
    assert torch.equal(smooth_targets(y, K, 0.0), F.one_hot(y, K).float())


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_criterion_after_setup_matches_the_reference(epsilon):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(16, K, generator=gen) * 3
    hard = torch.randint(0, K, (16,), generator=gen)
    soft = _soft(16, gen)
    run = SimpleNamespace(criterion=torch.nn.CrossEntropyLoss())
    LabelSmoothing(epsilon=epsilon).setup(run)
    for targets in (hard, soft):
        assert run.criterion(logits, targets).item() == pytest.approx(_reference(logits, targets, epsilon).item(), rel=1e-5)
    if epsilon:
        assert run.criterion(logits, hard).item() != pytest.approx(F.cross_entropy(logits, hard).item(), rel=1e-3)


class Mix(Trick):
    """Turns the labels into soft targets, as mixing tricks do."""

    name = "mix"

    def transform_batch(self, run, x, y):
        onehot = F.one_hot(y, run.data.num_classes).float()
        return x, 0.6 * onehot + 0.4 * onehot.roll(1, dims=0)


class Probe(Trick):
    """Computes the reference loss of each batch before the step and compares the step's loss with it."""

    name = "probe"

    def __init__(self, epsilon):
        self.epsilon = epsilon
        self.pairs: list[tuple[float, float, float]] = []  # (loss of the step, reference, plain cross-entropy)

    def transform_batch(self, run, x, y):
        with torch.no_grad():
            logits = run.model(x)
            self._pending = (_reference(logits, y, self.epsilon).item(), F.cross_entropy(logits, y).item())
        return x, y

    def on_step_end(self, run, loss):
        self.pairs.append((loss.item(), *self._pending))


@pytest.mark.parametrize("soft", [False, True])
def test_a_run_trains_on_the_smoothed_loss(soft):
    epsilon = 0.2
    data = tiny_data()
    model = tiny_model(data)
    with torch.no_grad():  # confident logits, where smoothing makes a difference to the loss
        model[-1].weight.mul_(30)
    probe = Probe(epsilon)
    tricks = [LabelSmoothing(epsilon=epsilon), *([Mix()] if soft else []), probe]
    # flip=True would be inert here: the loader flips only as part of augmentation, which is off.
    result = train_tiny(tricks, "6steps", data=data, model=model)
    assert len(probe.pairs) == result.steps == 6
    for loss, reference, plain in probe.pairs:
        assert loss == pytest.approx(reference, rel=1e-4)
        assert loss != pytest.approx(plain, rel=1e-3)


@pytest.mark.parametrize("epsilon", [-0.1, 1.0, 1.5])
def test_constructor_rejects_out_of_range_epsilon(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        LabelSmoothing(epsilon=epsilon)
