"""Small layers the built-in models need and :mod:`torch.nn` lacks."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Square"]


class Square(nn.Module):
    """Element-wise square activation, ``y = x * x``.

    The polynomial activation of CryptoNets (Gilad-Bachrach et al., ICML 2016, section 4.1):
    unlike ReLU it needs no comparison, only one multiplication, so homomorphic encryption
    and secret-sharing protocols (one Beaver-triple multiplication) can evaluate it. Shape
    is preserved: any ``(N, *)`` in, the same shape out.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x
