"""Image-quality metrics on batched torch tensors: MSE, PSNR and SSIM.

All functions take two tensors ``x`` and ``y`` of the same shape ``(N, C, H, W)`` (a single
image ``(C, H, W)`` or ``(H, W)`` is promoted to a batch of one), any number of channels,
values on a scale whose width is ``data_range`` (1.0 for images in ``[0, 1]``, 255 for
8-bit). They work on whatever device the inputs live on and never track gradients of their
own (``ssim`` is differentiable if the inputs require grad).

``reduction="mean"`` returns a 0-d tensor (mean over images), ``"none"`` one value per
image, shape ``(N,)``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["Reduction", "mse", "psnr", "ssim", "gaussian_window"]

Reduction = Literal["mean", "none"]


def _as_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"expected torch tensors, got {type(x).__name__} and {type(y).__name__}; "
            "convert with torch.as_tensor(array)"
        )
    if x.shape != y.shape:
        raise ValueError(
            f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.ndim == 2:
        x, y = x[None, None], y[None, None]
    elif x.ndim == 3:
        x, y = x[None], y[None]
    elif x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), (C, H, W) or (H, W) images, got {tuple(x.shape)}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    return x.to(dtype), y.to(dtype)


def _reduce(per_image: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "none":
        return per_image
    if reduction == "mean":
        return per_image.mean()
    raise ValueError(f"reduction={reduction!r} is not 'mean' or 'none'")


def mse(x: torch.Tensor, y: torch.Tensor, *, reduction: Reduction = "mean") -> torch.Tensor:
    """Mean squared error per image, ``mean_{c,h,w} (x - y)^2``.

    Parameters
    ----------
    x, y : tensors of shape (N, C, H, W)
    reduction : ``"mean"`` (0-d tensor) or ``"none"`` (shape (N,))
    """
    x, y = _as_batch(x, y)
    return _reduce((x - y).pow(2).flatten(1).mean(1), reduction)


def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, per image.

    Identical images have zero MSE and PSNR ``+inf`` (returned as ``inf``, without warnings);
    the mean over a batch that contains an identical pair is therefore ``inf`` too -- use
    ``reduction="none"`` to look at images one by one.

    Parameters
    ----------
    x, y : tensors of shape (N, C, H, W)
    data_range : width of the value scale (max - min possible value)
    reduction : ``"mean"`` (0-d tensor) or ``"none"`` (shape (N,))
    """
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    err = mse(x, y, reduction="none")
    peak = torch.as_tensor(float(data_range) ** 2, dtype=err.dtype, device=err.device)
    inf = torch.full_like(err, math.inf)
    out = torch.where(
        err > 0, 10.0 * torch.log10(peak / err.clamp_min(torch.finfo(err.dtype).tiny)), inf
    )
    return _reduce(out, reduction)


def gaussian_window(
    size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Normalised 1-D Gaussian weights ``w_i ∝ exp(-i^2 / (2 sigma^2))``, ``i = -(size-1)/2 ..
    (size-1)/2``; shape (size,). The 2-D window of SSIM is the outer product ``w w^T``."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(i**2) / (2 * sigma**2))
    return (w / w.sum()).to(dtype)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Structural similarity index (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004).

    For every ``win_size x win_size`` window that lies fully inside the image (no padding),
    with Gaussian weights ``w`` (std ``sigma``) the local statistics are
    ``mu_x = sum w x``, ``sigma_x^2 = sum w x^2 - mu_x^2`` and
    ``sigma_xy = sum w x y - mu_x mu_y`` (population, not sample, moments), and (eq. 13)

    ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 +
    sigma_y^2 + C2))`` with ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, ``L = data_range``.

    The per-image value is the mean over all windows and channels (eq. 17, channels
    averaged). This is the definition of ``skimage.metrics.structural_similarity`` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.

    Parameters
    ----------
    x, y : tensors of shape (N, C, H, W) (any C); H and W must be at least ``win_size``
        (28x28 MNIST images are fine with the default 11).
    data_range : width of the value scale (1.0 for images in [0, 1])
    win_size, sigma : Gaussian window (odd size) and its standard deviation
    k1, k2 : stabilising constants of the paper
    reduction : ``"mean"`` (0-d tensor) or ``"none"`` (shape (N,))

    Returns
    -------
    torch.Tensor : SSIM in ``[-1, 1]`` (1 iff ``x == y``)
    """
    x, y = _as_batch(x, y)
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    n, c, h, w = x.shape
    if h < win_size or w < win_size:
        raise ValueError(
            f"images of size {h}x{w} are smaller than the SSIM window {win_size}x{win_size}; "
            "pass a smaller odd win_size (e.g. win_size=7) or upsample the images"
        )
    g = gaussian_window(win_size, sigma, dtype=x.dtype).to(x.device)
    gh = g.view(1, 1, win_size, 1).expand(c, 1, win_size, 1)
    gw = g.view(1, 1, 1, win_size).expand(c, 1, 1, win_size)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable valid Gaussian filter per channel
        return F.conv2d(F.conv2d(t, gh, groups=c), gw, groups=c)

    # one pass over the five stacked maps: x, y, x^2, y^2, xy
    stats = blur(torch.cat([x, y, x * x, y * y, x * y], dim=0))
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(n, dim=0)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    s = ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    return _reduce(s.flatten(1).mean(1), reduction)
