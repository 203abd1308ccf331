"""Helpers of the ObfNet tests (a module, not conftest: conftest names clash across dirs)."""

from __future__ import annotations

import torch


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
