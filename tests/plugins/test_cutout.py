"""Tests of cutout: one zeroed square patch per chosen image (clipped only at the border), the same in every
channel, and every other pixel exactly as the loader gave it."""

from __future__ import annotations

import pytest
import torch

from automl.testing import BatchRecorder, tiny_data, train_tiny, try_trick
from automl_plugins.cutout import Cutout, cutout_mask, patch_side

pytestmark = pytest.mark.usefixtures("one_thread")


def patch_of(zeroed: torch.Tensor) -> tuple[range, range] | None:
    """The rows and columns of the one rectangle that ``zeroed`` (H, W) is, or None when nothing is;
    fails when the True pixels are not one axis-aligned rectangle."""
    rows = torch.nonzero(zeroed.any(1)).flatten().tolist()
    cols = torch.nonzero(zeroed.any(0)).flatten().tolist()
    if not rows:
        return None
    assert rows == list(range(rows[0], rows[-1] + 1)) and cols == list(range(cols[0], cols[-1] + 1))
    box = torch.zeros_like(zeroed)
    box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    assert torch.equal(zeroed, box), "the zeroed pixels are not one rectangle"
    return range(rows[0], rows[-1] + 1), range(cols[0], cols[-1] + 1)


def assert_side(span: range, side: int, length: int) -> None:
    """A patch's extent along one axis: ``side`` pixels, fewer only where it is clipped at the border."""
    assert 1 <= len(span) <= side
    if len(span) < side:
        assert span.start == 0 or span.stop == length


def test_patch_side_is_a_fraction_of_the_image_side():
    assert patch_side(0.25, 32) == 8 and patch_side(0.5, 8) == 4 and patch_side(0.01, 8) == 1


def test_every_chosen_image_has_one_patch_of_the_side_clipped_only_at_the_border():
    generator = torch.Generator().manual_seed(0)
    mask = cutout_mask(500, 32, 24, 8, 1.0, generator, torch.device("cpu"))
    assert mask.shape == (500, 1, 32, 24)
    full = 0
    for image in mask[:, 0]:
        rows, cols = patch_of(image)
        assert_side(rows, 8, 32)
        assert_side(cols, 8, 24)
        full += len(rows) == len(cols) == 8
    assert full > 250  # most centres are far enough from the border for a whole patch


def test_an_image_gets_a_patch_with_probability_p():
    generator = torch.Generator().manual_seed(1)
    mask = cutout_mask(4000, 16, 16, 4, 0.3, generator, torch.device("cpu"))
    chosen = mask.flatten(1).any(1).float().mean().item()
    assert chosen == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_training_batches_have_one_zero_patch_per_chosen_image_and_are_untouched_elsewhere(p):
    data = tiny_data(shape=(3, 8, 8))
    before, after = BatchRecorder(before=True), BatchRecorder()  # before and after cutout (order -20)
    cutout = Cutout(size=0.5, p=p, seed=0)
    result = train_tiny([before, cutout, after], "10steps", data=data, augment=True, flip=True)
    assert result.steps == len(before.batches) == len(after.batches) == 10
    chosen = total = 0
    for (x0, y0), (x1, y1) in zip(before.batches, after.batches):
        assert torch.equal(y0, y1)
        assert (x0 != 0).all()  # so a zero after cutout is cutout's
        zeroed = x1 == 0
        # The same patch in every channel, and nothing else changed.
        assert torch.equal(zeroed, zeroed[:, :1].expand_as(zeroed))
        assert torch.equal(x1[~zeroed], x0[~zeroed])
        for image in zeroed[:, 0]:
            patch = patch_of(image)
            total += 1
            if patch is not None:
                chosen += 1
                assert_side(patch[0], 4, 8)
                assert_side(patch[1], 4, 8)
    assert total == 160
    assert chosen == 160 if p == 1.0 else 0.3 < chosen / total < 0.7


def test_built_through_its_search_space_it_trains_and_records_its_seed():
    seen = BatchRecorder()
    trick, result = try_trick(Cutout, "4steps", others=[seen])
    assert 0.1 <= trick.size <= 0.6 and 0.25 <= trick.p <= 1.0
    assert result.steps == 4 and result.attrs["cutout.seed"] == torch.initial_seed()
    assert trick.mask is not None and torch.equal(seen.batches[-1][0] == 0, trick.mask.expand_as(seen.batches[-1][0]))


def test_the_same_seed_cuts_the_same_patches():
    masks = []
    for _ in range(2):
        cutout = Cutout(size=0.5, seed=7)
        train_tiny([cutout], "3steps")
        masks.append(cutout.mask)
    assert torch.equal(masks[0], masks[1])
