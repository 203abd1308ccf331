"""Fixtures of the networked PE-HEALTH tests: a CA with every party, a tiny model, live services."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from medshield.secure.compiler import compile_model
from medshield.secure.net import credentials as cr
from medshield.secure.net.centre import ResultCollector, deploy_model
from medshield.secure.net.server import SecureServer
from medshield.secure.program import CompiledModel
from medshield.secure.randomness import RandomSource, SecurityWarning

PARTIES = ("centre", "server0", "server1", *(f"sensor-{i}" for i in range(8)))


def seeded(seed: int) -> RandomSource:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return RandomSource(seed=seed)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    cr.init_ca(d)
    for name in PARTIES:
        cr.issue(d, name)
    return d


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second CA issuing the same names: its parties must be refused."""
    d = tmp_path_factory.mktemp("foreign")
    cr.init_ca(d)
    for name in ("centre", "server0", "sensor-0"):
        cr.issue(d, name)
    return d


@pytest.fixture(scope="session")
def model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3)).eval()


@pytest.fixture(scope="session")
def compiled(model: torch.nn.Sequential) -> CompiledModel:
    return compile_model(model, (16,), frac_bits=12, ring_bits=32)


@pytest.fixture(scope="session")
def plain(model: torch.nn.Sequential) -> Callable[[np.ndarray], np.ndarray]:
    """The plaintext model (the reference the secure results are compared with)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(x, dtype=torch.float32)).numpy()

    return run


@dataclass
class Live:
    pki: Path
    s0: SecureServer
    s1: SecureServer
    collector: ResultCollector

    @property
    def servers(self) -> tuple[tuple[str, int], tuple[str, int]]:
        return self.s0.address, self.s1.address


@pytest.fixture
def live(pki: Path, compiled: CompiledModel) -> Iterator[Live]:
    """Both servers and the centre's collector in threads, model deployed.

    Material: 48 single-image slots and 12 four-image slots (for merged runs).
    """
    s1 = SecureServer(party=1, creds=cr.load_credentials(pki, "server1"), timeout=10,
                      input_wait=3).start()
    s0 = SecureServer(party=0, creds=cr.load_credentials(pki, "server0"), peer=s1.address,
                      timeout=10, input_wait=3).start()
    col = ResultCollector(creds=cr.load_credentials(pki, "centre"),
                          programs=[compiled.program]).start()
    deploy_model(compiled, creds=cr.load_credentials(pki, "centre"),
                 servers=(s0.address, s1.address), centre_address=col.address, slots=48,
                 rng=seeded(7), merge_batch=4)
    yield Live(pki, s0, s1, col)
    for s in (s0, s1):
        s.stop()
    col.stop()
