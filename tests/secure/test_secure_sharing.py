"""Randomness sources and additive / XOR sharing: correctness and what one share reveals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

import medshield.secure.randomness as randomness
from medshield.secure.randomness import RandomSource, SecurityWarning
from medshield.secure.ring import Ring
from medshield.secure.sharing import (
    reconstruct,
    reconstruct_bits,
    share,
    share_bits,
    share_input,
)


def test_secure_mode_draws_from_os_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def spy(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(randomness.os, "urandom", spy)
    src = RandomSource()
    assert src.is_secure and "secure" in repr(src)
    src.uint64((4, 5))
    src.bits(13)
    assert calls == [160, 2]


def test_default_everywhere_is_secure(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom
    monkeypatch.setattr(randomness.os, "urandom", lambda n: calls.append(n) or real(n))
    share_input(np.zeros((2, 3)), frac_bits=8, ring_bits=32)  # no rng given
    assert calls, "share_input without an rng must use OS entropy"


def test_seeded_mode_warns_loudly_and_is_reproducible() -> None:
    with pytest.warns(SecurityWarning, match="NOT SECURE"):
        a = RandomSource(seed=7)
    with pytest.warns(SecurityWarning):
        b = RandomSource.seeded(7)
    assert not a.is_secure and "insecure" in repr(a)
    assert np.array_equal(a.uint64(10), b.uint64(10))
    assert np.array_equal(a.bits(100), b.bits(100))


def test_random_values_have_the_requested_ranges(rng: RandomSource) -> None:
    assert set(np.unique(rng.bits(1000)).tolist()) == {0, 1}
    assert rng.ring(1000, 12).max() < 2**12
    assert rng.uint16(5).dtype == np.uint16
    with pytest.raises(ValueError):
        rng.bytes(-1)


@pytest.mark.parametrize("bits", [64, 32])
def test_share_reconstruct_round_trip(bits: int, rng: RandomSource) -> None:
    ring = Ring(bits)
    x = ring.encode(np.linspace(-3, 3, 25).reshape(5, 5), 10)
    x0, x1 = share(x, ring, rng)
    assert x0.shape == x1.shape == x.shape
    assert np.array_equal(reconstruct(x0, x1, ring), x)
    assert not np.array_equal(x0, x) and not np.array_equal(x1, x)
    b = rng.bits(50)
    b0, b1 = share_bits(b, rng)
    assert np.array_equal(reconstruct_bits(b0, b1), b)


def test_a_share_is_the_input_minus_a_uniform_mask(make_rng: Callable[[int], RandomSource]) -> None:
    """Structural check: share 0 is exactly the source's next uniform draw, share 1 = x - it."""
    ring = Ring(32)
    x = ring.encode(np.arange(6.0), 8)
    x0, x1 = share(x, ring, make_rng(5))
    mask = make_rng(5).ring(x.shape, 32)
    assert np.array_equal(x0, mask)
    assert np.array_equal(x1, ring.sub(x, mask))


def test_one_share_is_distributed_the_same_whatever_the_input(rng: RandomSource) -> None:
    """A server's share of 0 and of a large secret are both uniform (chi-square, KS tests)."""
    ring = Ring(32)
    n = 20000
    views = []
    for secret in (0.0, 100.0):
        x = ring.encode(np.full(n, secret), 12)
        _, x1 = share(x, ring, rng)
        views.append(x1.astype(np.float64) / 2**32)
    for v in views:  # uniform on [0, 1): top 4 bits equally likely
        counts = np.bincount((v * 16).astype(int), minlength=16)
        assert stats.chisquare(counts).pvalue > 1e-4
    assert stats.ks_2samp(views[0], views[1]).pvalue > 1e-4
    # the test has power: the *secret* itself is far from uniform
    secret_view = ring.encode(np.full(n, 100.0), 12).astype(np.float64) / 2**32
    assert stats.ks_2samp(views[0], secret_view).pvalue < 1e-10


def test_sensor_side_needs_only_numpy() -> None:
    code = (
        "import sys, numpy as np\n"
        "from medshield.secure.sharing import share_input\n"
        "import warnings\n"
        "x0, x1 = share_input(np.ones((1, 4)), frac_bits=8, ring_bits=32)\n"
        "assert 'torch' not in sys.modules, 'the sensor must not need torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
