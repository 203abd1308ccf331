"""Fixtures of the federated tests: Flower must be installed; one torch thread.

The tiny networks here run ~20x faster on one intra-op thread than on two threads of a
busy 2-core machine, and one thread keeps runs reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

pytest.importorskip("flwr", reason="Flower is not installed: pip install 'medshield[federated]'")
pytest.importorskip("dp_accounting",
                    reason="dp-accounting is not installed: pip install 'flwr[dp]==1.41.0'")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
