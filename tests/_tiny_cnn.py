"""The tiny MNIST CNN that the attack and defence tests train once per session."""

from __future__ import annotations

from torch import Tensor, nn


class TinyCNN(nn.Module):
    """Two conv-ReLU-pool blocks and a linear head: ``(N, 1, 28, 28)`` -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(16 * 5 * 5, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
