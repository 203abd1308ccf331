"""Activation noise and NoPeek: statistics, a slow reference for distance correlation, effect."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from medshield.defenses.activation_noise import ActivationNoise
from medshield.defenses.base import DEFENSES
from medshield.defenses.nopeek import NoPeek, distance_correlation

pytestmark = pytest.mark.timeout(60)


def dcor_reference(x: np.ndarray, z: np.ndarray) -> float:
    """Székely, Rizzo and Bakirov (2007), definition 4, with explicit loops in float64."""
    n = len(x)
    x, z = x.reshape(n, -1).astype(np.float64), z.reshape(n, -1).astype(np.float64)
    a = np.array([[math.dist(x[j], x[k]) for k in range(n)] for j in range(n)])
    b = np.array([[math.dist(z[j], z[k]) for k in range(n)] for j in range(n)])

    def centre(m: np.ndarray) -> np.ndarray:
        out = np.empty_like(m)
        for j, k in itertools.product(range(n), range(n)):
            out[j, k] = m[j, k] - m[j, :].mean() - m[:, k].mean() + m.mean()
        return out

    A, B = centre(a), centre(b)
    dcov = sum(A[j, k] * B[j, k] for j in range(n) for k in range(n)) / n**2
    vx = sum(A[j, k] ** 2 for j in range(n) for k in range(n)) / n**2
    vz = sum(B[j, k] ** 2 for j in range(n) for k in range(n)) / n**2
    return math.sqrt(dcov / math.sqrt(vx * vz))


@pytest.mark.parametrize(("n", "dx", "dz", "seed"), [(2, 3, 1, 0), (7, 16, 5, 1), (20, 4, 30, 2)])
def test_distance_correlation_matches_the_slow_reference(n, dx, dz, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dx, generator=g, dtype=torch.float64)
    w = torch.randn(1, dz, generator=g, dtype=torch.float64)
    z = torch.tanh(x[:, :1] * w) + 0.3 * torch.randn(n, dz, generator=g, dtype=torch.float64)
    ours = float(distance_correlation(x, z))
    assert ours == pytest.approx(dcor_reference(x.numpy(), z.numpy()), rel=1e-9, abs=1e-12)


def test_distance_correlation_properties_and_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 6, 6, generator=g)
    assert float(distance_correlation(x, 3 * x - 1)) == pytest.approx(1.0, abs=1e-5)
    # independent low-dimensional samples: small (the sample dCor is biased upwards)
    assert float(distance_correlation(torch.rand(300, 2, generator=g),
                                      torch.rand(300, 2, generator=g))) < 0.2
    assert float(distance_correlation(x, torch.ones(32, 4))) == 0.0
    z = torch.cat([x[:4], x[:4]]).flatten(1).clone().requires_grad_(True)  # coincident rows
    distance_correlation(torch.cat([x[:4], x[4:8]]), z).backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="same size"):
        distance_correlation(x[:3], x[:4])


def test_nopeek_is_weighted_dcor_and_registered():
    x, a = torch.rand(10, 5), torch.rand(10, 3)
    assert float(NoPeek(weight=0.3)(x, a)) == pytest.approx(0.3 * float(distance_correlation(x, a)))
    assert isinstance(DEFENSES.create("nopeek", weight=0.2), NoPeek)
    assert isinstance(DEFENSES.create("activation-noise", scale=0.1), ActivationNoise)


@pytest.mark.parametrize("distribution", ["laplace", "gaussian"])
def test_activation_noise_has_the_stated_distribution(distribution):
    layer = ActivationNoise(scale=0.5, distribution=distribution, seed=3)
    noise = layer(torch.zeros(200_000)).double()
    assert abs(float(noise.mean())) < 0.01
    if distribution == "laplace":  # E|X| = b, Var = 2 b^2
        assert float(noise.abs().mean()) == pytest.approx(0.5, rel=0.02)
        assert float(noise.var()) == pytest.approx(2 * 0.25, rel=0.03)
    else:
        assert float(noise.std()) == pytest.approx(0.5, rel=0.02)
    assert torch.isfinite(noise).all()


def test_activation_noise_seed_modes_and_defend():
    a = torch.zeros(4, 3)
    assert torch.equal(ActivationNoise(scale=1.0, seed=1)(a), ActivationNoise(scale=1.0, seed=1)(a))
    layer = ActivationNoise(scale=1.0, seed=1, train_only=True).eval()
    assert torch.equal(layer(a), a)
    assert torch.equal(ActivationNoise(scale=0.0)(a), a)
    defended = ActivationNoise(scale=0.1, seed=0).defend(torch.nn.Identity())
    assert not torch.equal(defended(a), a)
    with pytest.raises(ValueError, match="scale"):
        ActivationNoise(scale=-1)


def test_nopeek_lowers_distance_correlation_in_split_training():
    """Same data and seed, with and without NoPeek: the regularised device half leaks less."""
    from medshield.split import SplitDevice, SplitServer, run_in_process

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 6, 6, generator=g)
    y = (x.mean((1, 2, 3)) > x.mean()).long()
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]

    def train(weight: float) -> float:
        torch.manual_seed(0)
        dev_half = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 8), torch.nn.ReLU())
        srv_half = torch.nn.Linear(8, 2)
        reg = NoPeek(weight=weight) if weight else None
        run_in_process(SplitServer(srv_half, lr=1e-2, device="cpu"),
                       [SplitDevice(dev_half, batches, lr=1e-2, regularizer=reg, device="cpu")],
                       epochs=15, evaluate=False)
        with torch.no_grad():
            return float(distance_correlation(x, dev_half(x)))

    plain, nopeek = train(0.0), train(2.0)
    assert nopeek < plain - 0.1, (plain, nopeek)
