"""Small undefended victim models and the trivial attacker for the privacy-attack tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sigmoid_cnn(seed: int = 0, num_classes: int = 10) -> nn.Module:
    """The DLG paper's kind of victim: a small CNN with sigmoid activations (untrained)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 12, 5, padding=2, stride=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, padding=2, stride=1), nn.Sigmoid(),
            nn.Flatten(), nn.Linear(12 * 8 * 8, num_classes),
        )  # fmt: skip


def relu_cnn(seed: int = 0, num_classes: int = 10) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(8 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, num_classes),
        )  # fmt: skip


def baseline_mse(truth: Tensor, aux: Tensor) -> float:
    """The trivial attacker: guess the mean auxiliary image for every secret image."""
    guess = aux.mean(0, keepdim=True).expand_as(truth)
    return float((guess - truth).pow(2).mean())


def trained_pgsl_cnn(digits: tuple[Tensor, Tensor], seed: int = 0) -> nn.Module:
    """PGSL's kind of victim: 3x3 conv -> BatchNorm -> ReLU blocks and two dense layers,
    trained for two epochs on 1,000 digits (about half accurate; under a second)."""
    from medshield.models import PGSLCNN

    x, y = digits
    model = PGSLCNN(num_classes=10, in_channels=1, input_size=16, width=8, hidden=32, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(2):
        perm = torch.randperm(1000, generator=g)
        for i in range(0, 1000, 50):
            idx = perm[i : i + 50]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
