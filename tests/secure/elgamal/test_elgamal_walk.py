"""Distinguished-point walks: fast walk vs the literal loop; error rate vs the model."""

from __future__ import annotations

import numpy as np

from medshield.secure.elgamal import TOY_GROUP, conversion_error, walk, walk_reference

G = TOY_GROUP


def test_vectorised_walk_equals_the_literal_loop(rng) -> None:
    h = G.g_pow(G.random_exponents((40,), rng))
    fast = walk(G, h, dp_bits=5, max_steps=300, chunk=16)
    slow = walk_reference(G, h, dp_bits=5, max_steps=300)
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    assert fast[1].all()


def test_walk_gives_up_after_theta(rng) -> None:
    h = G.g_pow(G.random_exponents((30,), rng))
    mu, ok = walk(G, h, dp_bits=12, max_steps=3)
    assert (~ok).any()
    assert (mu[~ok] == 3).all() and (mu[ok] <= 3).all()


def _shares_of(v: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    h1 = G.g_pow(G.random_exponents(v.shape, rng))
    h0 = G.mul(h1, G.g_pow(G.reduce_exponent(v)))
    return h0, h1


def test_walks_convert_multiplicative_to_additive_shares(rng) -> None:
    v = np.array([0, 1, -1, 5, -7, 3, 2, -2] * 25)
    h0, h1 = _shares_of(v, rng)
    mu0, ok0 = walk(G, h0, dp_bits=12, max_steps=1 << 17)
    mu1, ok1 = walk(G, h1, dp_bits=12, max_steps=1 << 17)
    assert ok0.all() and ok1.all()
    assert (mu1 - mu0 == v).mean() > 0.99  # error model: about 3/4096 per conversion


def test_measured_failure_rate_matches_the_model(rng) -> None:
    v = np.full(3000, 24)
    h0, h1 = _shares_of(v, rng)
    mu0, _ = walk(G, h0, dp_bits=5, max_steps=4000)
    mu1, _ = walk(G, h1, dp_bits=5, max_steps=4000)
    measured = float((mu1 - mu0 != v).mean())
    model = float(conversion_error(24, dp_bits=5, max_steps=4000))
    assert abs(measured - model) < 0.04, (measured, model)
    assert 0.4 < model < 0.7  # 1 - (31/32)^24 = 0.53: the test can fail


def test_error_model_grows_with_value_and_falls_with_density() -> None:
    e = conversion_error(np.array([1, 16, 256]), dp_bits=10, max_steps=1 << 20)
    assert e[0] < e[1] < e[2]
    assert conversion_error(256, dp_bits=14, max_steps=1 << 20) < e[2]
