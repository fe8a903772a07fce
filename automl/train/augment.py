"""Random crop and flip applied to a whole batch at once, on the device the batch lives on."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from automl.errors import UserError

__all__ = ["augment_batch", "default_padding", "random_crop", "random_flip"]


def default_padding(side: int) -> int:
    """The crop padding used when none is given: an eighth of the image side, at least 1 (4 for 32 px)."""
    # 4 px at 32 px is the CIFAR recipe of He et al. 2016, also used by the ResNet-9 and
    # airbench baselines; scaling it with the side keeps the same relative jitter elsewhere.
    return max(1, side // 8)


def _check_batch(x: Tensor) -> None:
    if x.ndim != 4:
        raise UserError(f"augmentation expects a batch shaped (N, C, H, W), got shape {tuple(x.shape)}")


def _randint(high: int, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    # A generator only draws on its own device; drawing there and moving n integers
    # costs far less than forcing callers to keep one generator per device.
    draw_on = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=draw_on).to(device, non_blocking=True)


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    draw_on = generator.device if generator is not None else device
    return torch.rand((n,), generator=generator, device=draw_on).to(device, non_blocking=True)


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Pad every image by ``padding`` pixels and crop it back to (H, W) at a random offset.

    Padding reflects the image rather than adding zeros: a zero border is a sharp
    edge that real images do not have, and the net can learn to read the
    translation off it (the choice of Page's ResNet-9 and airbench). Reflection
    needs ``padding < min(H, W)``.

    Each sample gets its own offset, uniform over the ``(2 * padding + 1) ** 2``
    positions; all samples are cropped by one gather, with no loop over them.
    """
    _check_batch(x)
    if not isinstance(padding, int) or padding < 0:
        raise UserError(f"crop padding must be a non-negative integer, got padding={padding!r}")
    if padding == 0:
        return x
    n, c, h, w = x.shape
    if padding >= min(h, w):
        raise UserError(
            f"crop padding={padding} needs images larger than it for reflect padding, got {h}x{w};"
            f" use a padding below {min(h, w)}"
        )
    padded = F.pad(x, (padding, padding, padding, padding), mode="reflect")
    span = 2 * padding + 1
    dy = _randint(span, n, generator, x.device)
    dx = _randint(span, n, generator, x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (N, W)
    # Broadcast advanced indexing: out[n, c, i, j] = padded[n, c, rows[n, i], cols[n, j]].
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # Keep a channels_last batch channels_last, or the model's convolutions pay for a copy.
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    _check_batch(x)
    flip = _rand(x.shape[0], generator, x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def augment_batch(
    x: Tensor,
    padding: int | None = None,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The standard CIFAR augmentation: a random padded crop, then a random horizontal flip.

    ``padding=None`` is :func:`default_padding` of the image width.
    """
    x = random_crop(x, default_padding(x.shape[-1]) if padding is None else padding, generator)
    if flip:
        x = random_flip(x, generator)
    return x
