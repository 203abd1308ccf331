"""Small undefended victim models and the trivial attacker for the privacy-attack tests."""

from __future__ import annotations

import torch
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
