"""Tiny seeded models and data shared by the split-learning tests and the server peer process."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from medshield.models import MODELS, cut_model

CUT = "conv2"


def tiny_net(seed: int = 0) -> nn.Module:
    """PGSL's CNN shrunk to 8x8 inputs and 4 channels; no dropout (deterministic)."""
    return MODELS.create(
        "pgsl-cnn", in_channels=1, input_size=8, width=4, hidden=8, num_classes=3,
        dropout=0.0, seed=seed,
    )


def halves(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    return cut_model(tiny_net(seed), CUT)


def device_batches(rank: int, n_batches: int = 3, batch: int = 5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + rank)
    return [
        (torch.rand(batch, 1, 8, 8, generator=g), torch.randint(0, 3, (batch,), generator=g))
        for _ in range(n_batches)
    ]


def centralised(
    seed: int, n_devices: int, epochs: int, optimizer: str, lr: float
) -> nn.Module:
    """Train the composed model on the devices' batches in turn order, in one process."""
    net = copy.deepcopy(tiny_net(seed)).train()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    for _ in range(epochs):
        for k in range(n_devices):
            for x, y in device_batches(k):
                opt.zero_grad()
                F.cross_entropy(net(x), y).backward()
                opt.step()
    return net
