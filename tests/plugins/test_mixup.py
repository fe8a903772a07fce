"""Tests of mixup: inputs and one-hot targets mixed with one Beta(alpha, alpha) weight per batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from automl.testing import LAST, BatchRecorder, tiny_data, tiny_model, train_tiny
from automl.trick import Trick
from automl_plugins.label_smoothing import LabelSmoothing
from automl_plugins.mixup import Mixup, mixup

pytestmark = pytest.mark.usefixtures("one_thread")

K = 5


def test_mixed_targets_match_a_reference_exactly():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 3, 3, generator=gen)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    lam = 0.3
    mx, my = mixup(x, y, K, lam, perm)
    assert my.shape == (6, K) and my.dtype == torch.float32
    for i in range(6):
        j = perm[i].item()
        expected = torch.zeros(K)
        expected[y[i]] += lam
        expected[y[j]] += 1 - lam
        assert torch.equal(my[i], expected), i
        assert torch.allclose(mx[i], lam * x[i] + (1 - lam) * x[j], rtol=0, atol=1e-7), i
    assert torch.allclose(my.sum(1), torch.ones(6)) and (my >= 0).all()
    # Soft targets (from another mixing trick) are mixed the same way.
    soft = torch.randn(6, K, generator=gen).softmax(1)
    _, mixed_soft = mixup(x, soft, K, lam, perm)
    assert torch.allclose(mixed_soft, lam * soft + (1 - lam) * soft[perm])
    # lam = 1 and the identity permutation leave the batch as it was.
    same_x, same_y = mixup(x, y, K, 1.0, perm)
    assert torch.equal(same_x, x) and torch.equal(same_y, F.one_hot(y, K).float())


def _mixed_run(alpha=0.4, budget="10steps", seed=None):
    trick, before, after = Mixup(alpha=alpha, seed=seed), BatchRecorder(before=True), BatchRecorder()
    lams, perms = [], []

    class Record(Trick):
        name = "record"
        order = LAST  # after mixup, which draws lam and perm in its transform_batch

        def transform_batch(self, run, x, y):
            lams.append(trick.lam)
            perms.append(trick.perm.clone())
            return x, y

    data = tiny_data()
    result = train_tiny([before, trick, after, Record()], budget, data=data, model=tiny_model(data))
    return result, data, before.batches, after.batches, lams, perms


def test_a_run_trains_on_mixed_batches():
    result, data, before, after, lams, perms = _mixed_run()
    assert len(before) == len(after) == len(lams) == result.steps == 10
    assert all(0 < lam < 1 for lam in lams)
    assert len(set(lams)) == len(lams)  # a fresh lam per batch
    for (x, y), (mx, my), lam, perm in zip(before, after, lams, perms):
        assert not torch.equal(perm, torch.arange(len(x)))
        assert not torch.allclose(mx, x)
        ref_x, ref_y = mixup(x, y, data.num_classes, lam, perm)
        assert torch.equal(mx, ref_x) and torch.equal(my, ref_y)
        assert my.shape == (len(x), data.num_classes)
        assert torch.allclose(my.sum(1), torch.ones(len(x))) and (my >= 0).all()
    assert result.attrs["mixup.seed"] == torch.initial_seed()  # tiny_model seeded torch; no seed option given


def test_runs_are_reproducible_and_the_seed_matters():
    result, _, _, first, lams1, perms1 = _mixed_run(budget="4steps", seed=3)
    assert result.attrs["mixup.seed"] == 3
    _, _, _, again, lams2, perms2 = _mixed_run(budget="4steps", seed=3)
    *_, lams3, perms3 = _mixed_run(budget="4steps", seed=4)
    assert lams1 == lams2 and all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert all(torch.equal(a, b) for a, b in zip(perms1, perms2))
    assert lams1 != lams3 and not all(torch.equal(a, b) for a, b in zip(perms1, perms3))


def test_mixes_before_the_tricks_that_read_the_batch():
    # The host runs hooks by ``order``: the teacher of distillation must see the mixed batch, and
    # mixed precision's channels-last conversion must apply to the batch the model finally gets.
    from automl_plugins.distillation import Distillation
    from automl_plugins.mixed_precision import MixedPrecision

    assert Mixup.order < min(Distillation.order, MixedPrecision.order)


def test_small_alpha_mixes_mildly():
    # Beta(alpha, alpha) with a small alpha piles up near 0 and 1: most batches stay close to one of the pair.
    *_, lams, _ = _mixed_run(alpha=0.1, budget="40steps", seed=0)
    assert sum(min(lam, 1 - lam) < 0.1 for lam in lams) > len(lams) / 2


class LossProbe(Trick):
    """The reference loss of each mixed batch, hand-computed before the step, next to the step's loss."""

    name = "loss_probe"

    def __init__(self, epsilon):
        self.epsilon = epsilon
        self.checks: list[tuple[float, float, float]] = []  # (loss of the step, reference, unsmoothed)

    def transform_batch(self, run, x, y):
        assert y.shape == (len(x), run.data.num_classes)  # mixed before this probe
        with torch.no_grad():
            log_p = run.model(x).log_softmax(1)

        def loss(eps):
            return (-((1 - eps) * y + eps / log_p.shape[1]) * log_p).sum(1).mean().item()

        self._pending = (loss(self.epsilon), loss(0.0))
        return x, y

    def on_step_end(self, run, loss):
        self.checks.append((loss.item(), *self._pending))


def test_composes_with_label_smoothing():
    epsilon = 0.2
    data = tiny_data()
    model = tiny_model(data)
    with torch.no_grad():  # confident logits, where smoothing makes a difference to the loss
        model[-1].weight.mul_(30)
    probe = LossProbe(epsilon)
    result = train_tiny([LabelSmoothing(epsilon=epsilon), Mixup(alpha=0.4), probe], "6steps", data=data, model=model)
    assert len(probe.checks) == result.steps == 6
    for loss, reference, unsmoothed in probe.checks:
        assert loss == pytest.approx(reference, rel=1e-4)
        assert loss != pytest.approx(unsmoothed, rel=1e-3)


def test_search_space_builds_valid_tricks():
    from automl.trick_space import SpaceRecorder, build_trick

    rec = SpaceRecorder("mixup")
    trick = build_trick(Mixup, rec)
    dist = rec.params["alpha"]
    assert set(rec.params) == {"alpha"}
    assert (dist.low, dist.high) == (0.1, 0.4)
    assert dist.low <= trick.alpha <= dist.high


@pytest.mark.parametrize("kwargs, name", [({"alpha": 0.0}, "alpha"), ({"alpha": -0.2}, "alpha"),
                                          ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed")])
def test_constructor_rejects_bad_values(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Mixup(**kwargs)
