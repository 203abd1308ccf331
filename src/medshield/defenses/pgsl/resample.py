"""PGSL's reversible down-sampling (device) and up-sampling (server) layers, section IV-B.

The attacked image :math:`\\hat x` of size ``C x H x W`` is split into its four polyphase
sub-images (pixels at even/odd rows and columns; the space-to-depth of the CRCNN paper the
PGSL paper cites [29], ``pixel_unshuffle`` in PyTorch), stacked as ``4C`` channels of
``H/2 x W/2``, and the saliency map is appended as one more channel: a
``(4C + 1) x H/2 x W/2`` tensor :math:`\\check x`. Up-sampling (``pixel_shuffle``) restores the
image exactly: no pixel is lost or changed.

The map has full resolution and must shrink to ``H/2 x W/2`` to be stacked; the paper does
not say how. We keep, per 2x2 block, its largest value (max pooling), so a salient pixel stays
visible; this channel alone is not invertible (its role is a hint, not data).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["downsample", "upsample", "pgsl_channels"]


def pgsl_channels(image_channels: int) -> int:
    """Channels of the down-sampled tensor: ``4 * image_channels + 1``."""
    return 4 * image_channels + 1


def downsample(x: Tensor, saliency: Tensor) -> Tensor:
    """``(N, C, H, W)`` image and ``(N, 1, H, W)`` map -> ``(N, 4C + 1, H/2, W/2)``.

    Channel ``4c + 2i + j`` holds ``x[:, c, i::2, j::2]``; the last channel is the map,
    max-pooled over 2x2 blocks.

    Raises
    ------
    ValueError
        Odd height or width (pad the images to even sizes first), or a map of the wrong shape.
    """
    n, _, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(
            f"the reversible down-sampling needs even image sides, got {h}x{w}; pad or resize "
            "the images to even sizes first"
        )
    if saliency.shape != (n, 1, h, w):
        raise ValueError(
            f"the saliency map must have shape {(n, 1, h, w)} (one channel, the image's size), "
            f"got {tuple(saliency.shape)}"
        )
    small_map = F.max_pool2d(saliency.to(x.dtype), 2)
    return torch.cat([F.pixel_unshuffle(x, 2), small_map], dim=1)


def upsample(t: Tensor) -> tuple[Tensor, Tensor]:
    """Invert :func:`downsample`: ``(N, 4C + 1, h, w)`` -> image ``(N, C, 2h, 2w)`` and the
    ``(N, 1, h, w)`` map channel.

    ``upsample(downsample(x, m))[0]`` equals ``x`` exactly (it only moves values).
    """
    k = t.shape[1] - 1
    if k < 4 or k % 4:
        raise ValueError(
            f"expected 4C + 1 channels (C image channels times four, plus the map), got "
            f"{t.shape[1]}"
        )
    return F.pixel_shuffle(t[:, :k], 2), t[:, k:]
