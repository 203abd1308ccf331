"""PGSL's feature fusion (eqs. 7-8) and adaptive weighted-average decision fusion (eqs. 9-11)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["ConvSumFusion", "adaptive_weights", "fuse_scores", "PAPER_WEIGHTS"]

#: The paper's initial weights (section V-D) for the recovered, fused and attacked streams.
PAPER_WEIGHTS: tuple[float, float, float] = (0.5, 0.3, 0.2)


class ConvSumFusion(nn.Module):
    """Convolution-sum fusion (Khowaja and Lee 2020, as PGSL eqs. 7-8).

    ``f_out = (concat(f_u, f_v) * filt + bias) + f_u``: the two maps are concatenated along
    the channels, a bank of ``k x k`` filters reduces ``2C`` channels back to ``C`` (the
    dimension reduction), and the result is added to ``f_u``.

    Parameters
    ----------
    channels
        Channels ``C`` of each input map.
    kernel_size
        Odd filter size (padding keeps the spatial size).

    Shapes: ``f_u``, ``f_v`` ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2 * channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, f_u: Tensor, f_v: Tensor) -> Tensor:
        if f_u.shape != f_v.shape:
            raise ValueError(
                f"fused maps must have the same shape, got {tuple(f_u.shape)} and "
                f"{tuple(f_v.shape)}"
            )
        return self.conv(torch.cat([f_u, f_v], dim=1)) + f_u  # type: ignore[no-any-return]


def _peak(scores: Tensor, per: Literal["sample", "batch"]) -> Tensor:
    if per == "sample":
        return scores.amax(1)  # (N,)
    if per == "batch":
        return scores.mean(0).amax().expand(scores.shape[0])
    raise ValueError(f"per must be 'sample' or 'batch', got {per!r}")


def adaptive_weights(
    s_r: Tensor,
    s_f: Tensor,
    s_a: Tensor,
    weights: tuple[float, float, float] = PAPER_WEIGHTS,
    *,
    per: Literal["sample", "batch"] = "sample",
) -> tuple[Tensor, Tensor]:
    """``(gamma, rho)`` of eqs. 10-11, each ``(N,)``.

    With :math:`S^{max} = \\max_{\\mathbb L} S(\\mathbb L)` of each stream's class scores,

    .. math:: \\gamma = \\frac{W_\\gamma S_r^{max}}{W_\\gamma S_r^{max} + W_\\rho S_f^{max}
              + W_\\beta S_a^{max}}, \\qquad
              \\rho = \\frac{W_\\rho S_f^{max}}{\\cdots} .

    ``weights`` are :math:`(W_\\gamma, W_\\rho, W_\\beta)` for the recovered, fused and
    attacked streams. The paper's "maximum average score of a class label" is read per sample
    (``per="sample"``: the top class probability of that sample) or, with ``per="batch"``, as
    the largest class probability averaged over the batch.
    """
    w_g, w_r, w_b = weights
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be non-negative and not all zero, got {weights}")
    a = w_g * _peak(s_r, per)
    b = w_r * _peak(s_f, per)
    c = w_b * _peak(s_a, per)
    den = (a + b + c).clamp_min(torch.finfo(s_r.dtype).tiny)
    return a / den, b / den


def fuse_scores(
    s_r: Tensor,
    s_f: Tensor,
    s_a: Tensor,
    weights: tuple[float, float, float] = PAPER_WEIGHTS,
    *,
    per: Literal["sample", "batch"] = "sample",
) -> Tensor:
    """Eq. 9: ``S_awa = gamma S_r + rho S_f + (1 - gamma - rho) S_a``, ``(N, K)``.

    ``s_r``, ``s_f``, ``s_a`` are ``(N, K)`` class scores (softmax probabilities) of the
    recovered, fused and attacked streams.
    """
    gamma, rho = adaptive_weights(s_r, s_f, s_a, weights, per=per)
    g, r = gamma.unsqueeze(1), rho.unsqueeze(1)
    return g * s_r + r * s_f + (1 - g - r) * s_a
