"""Tests of the batched crop and flip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from automl.errors import UserError
from automl.train.augment import augment_batch, default_padding, random_crop, random_flip


def _batch(n: int = 64, c: int = 3, h: int = 8, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _offset_of(out: torch.Tensor, padded: torch.Tensor) -> tuple[int, int] | None:
    """The (dy, dx) at which ``out`` is an exact window of ``padded``, found by slicing."""
    h, w = out.shape[-2:]
    for dy in range(padded.shape[-2] - h + 1):
        for dx in range(padded.shape[-1] - w + 1):
            if torch.equal(padded[:, dy : dy + h, dx : dx + w], out):
                return dy, dx
    return None


def test_crop_keeps_shape_and_dtype():
    x = _batch()
    out = random_crop(x, 3, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert out.dtype == x.dtype


def test_crop_is_an_exact_window_of_the_padded_image_and_covers_every_offset():
    p = 2
    x = _batch(n=400, c=2, h=6, w=7)
    out = random_crop(x, p, torch.Generator().manual_seed(3))
    padded = F.pad(x, (p, p, p, p), mode="reflect")
    offsets = set()
    for i in range(len(x)):
        offset = _offset_of(out[i], padded[i])
        assert offset is not None, f"sample {i} is not a window of its padded image"
        offsets.add(offset)
    assert offsets == {(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)}


def test_crop_with_zero_padding_is_the_identity():
    x = _batch()
    assert torch.equal(random_crop(x, 0), x)


def test_crop_refuses_padding_reflection_cannot_do():
    with pytest.raises(UserError, match="padding=8"):
        random_crop(_batch(h=8, w=8), 8)
    with pytest.raises(UserError, match="non-negative"):
        random_crop(_batch(), -1)
    with pytest.raises(UserError, match=r"\(N, C, H, W\)"):
        random_crop(torch.zeros(3, 8, 8), 2)


def test_crop_keeps_channels_last():
    x = _batch().contiguous(memory_format=torch.channels_last)
    out = random_crop(x, 2)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_flip_flips_about_half_and_flipped_ones_are_mirrored():
    x = _batch(n=1000)
    out = random_flip(x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same ^ mirrored).all()), "every image is either untouched or exactly mirrored"
    assert 400 < int(mirrored.sum()) < 600


def test_same_generator_seed_gives_same_result_and_other_seed_differs():
    x = _batch()
    a = augment_batch(x, padding=2, generator=torch.Generator().manual_seed(7))
    b = augment_batch(x, padding=2, generator=torch.Generator().manual_seed(7))
    c = augment_batch(x, padding=2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_without_flip_only_crops():
    x = _batch()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(augment_batch(x, padding=2, flip=False, generator=g1), random_crop(x, 2, g2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_drives_augmentation_of_a_cuda_batch():
    x = _batch().cuda()
    a = augment_batch(x, padding=2, generator=torch.Generator().manual_seed(7))
    b = augment_batch(x.cpu(), padding=2, generator=torch.Generator().manual_seed(7))
    assert a.device == x.device
    assert torch.equal(a.cpu(), b)
    cuda_gen = torch.Generator(device="cuda").manual_seed(7)
    assert augment_batch(x, padding=2, generator=cuda_gen).device == x.device


def test_default_padding_is_an_eighth_of_the_side_and_at_least_one():
    assert [default_padding(side) for side in (4, 8, 16, 32, 64)] == [1, 1, 2, 4, 8]


def test_augment_batch_pads_by_the_default_rule_when_not_told():
    x = _batch(w=32, h=32)
    a = augment_batch(x, generator=torch.Generator().manual_seed(7))
    b = augment_batch(x, padding=4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
