"""The effect of each trick of my-tricks, through automl.testing as a study would build and order them."""

from __future__ import annotations

import math

import pytest
import torch

from automl import Trick
from automl.testing import LAST, BatchRecorder, StepRecorder, tiny_settings, try_trick
from my_tricks.cosine import Cosine
from my_tricks.cutout import Cutout
from my_tricks.exp_decay import ExpDecay
from my_tricks.my_clip import MyClip


def test_cutout_zeroes_one_patch_per_chosen_image_and_leaves_every_other_pixel():
    before, after = BatchRecorder(before=True), BatchRecorder()
    _, result = try_trick(Cutout, "6steps", params={"size": 3, "p": 1.0}, others=[before, after])
    assert result.steps == len(before.batches) == len(after.batches) == 6
    for (x, y), (cx, cy) in zip(before.batches, after.batches):
        assert torch.equal(cy, y)
        changed = cx != x
        assert torch.equal(cx[changed], torch.zeros_like(cx[changed]))
        for image in changed[:, 0]:  # one channel: each image's patch is one 3x3 square
            rows, cols = image.nonzero(as_tuple=True)
            assert len(rows) == 9 and rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2


def test_cutout_chooses_images_with_probability_p():
    before, after = BatchRecorder(before=True), BatchRecorder()
    try_trick(Cutout, "20steps", params={"size": 2, "p": 0.5}, others=[before, after])
    hit = [bool((cx != x).any()) for (x, _), (cx, _) in zip(before.batches, after.batches) for x, cx in zip(x, cx)]
    assert 0.35 < sum(hit) / len(hit) < 0.65  # 320 images


def test_exp_decay_sets_the_lr_of_each_step_by_the_formula():
    rec = StepRecorder()
    _, result = try_trick(ExpDecay, "20steps", params={"final": 0.01}, others=[rec])
    lr = tiny_settings().lr
    assert len(rec.steps) == result.steps == 20
    for progress, _, run_lr, groups in rec.steps:
        assert run_lr == pytest.approx(lr * 0.01 ** progress) and groups == [pytest.approx(run_lr)]
    assert rec.lrs[-1] < rec.lrs[0] * 0.02


class GradNorms(Trick):
    """The global gradient norm in after_backward, at its place in the order: before or after the clipping."""

    def __init__(self):
        self.norms = []

    def after_backward(self, run):
        grads = [p.grad for g in run.optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_my_clip_bounds_the_gradient_norm_of_every_step():
    raw = type("Raw", (GradNorms,), {"name": "raw", "order": -LAST})()
    clipped = type("Clipped", (GradNorms,), {"name": "clipped", "order": LAST})()
    trick, _ = try_trick(MyClip, "10steps", params={"max_norm": 0.1}, others=[raw, clipped], lr=0.5)
    assert len(raw.norms) == len(clipped.norms) == 10
    assert any(n > 0.1 * 1.5 for n in raw.norms)  # the clipping had work to do
    for before, after in zip(raw.norms, clipped.norms):
        assert after <= 0.1 * (1 + 1e-4)
        assert after == pytest.approx(min(before, 0.1), rel=1e-4)


def test_cosine_reaches_its_floor_at_the_end_of_the_budget():
    trick = Cosine(floor=0.05)
    assert trick.lr_factor(0.0) == 1.0 and trick.lr_factor(1.0) == pytest.approx(0.05)
    assert trick.lr_factor(0.5) == pytest.approx(0.05 + 0.95 / 2)
    assert math.isclose(trick.lr_factor(0.25), 0.05 + 0.95 * (1 + math.cos(math.pi / 4)) / 2)
