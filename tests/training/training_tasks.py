"""Tiny synthetic classification tasks and models shared by the training tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from medshield.data.base import ArraySplit


def blobs(n: int, k: int, seed: int, dim: int = 4, spread: float = 0.4) -> ArraySplit:
    """``k`` Gaussian blobs around well separated centres (linearly separable in practice)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1000 + k).normal(0, 3, (k, dim)).astype(np.float32)
    y = rng.integers(0, k, n).astype(np.int64)
    x = centres[y] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return ArraySplit(x.astype(np.float32), y)


def mlp(k: int, seed: int, dim: int = 4, dropout: float = 0.2) -> nn.Module:
    """A 4-16-k perceptron with dropout, initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, k))
