"""SecConv (Protocol 2): fast per-party computation vs the literal loops, and correctness."""

from __future__ import annotations

import numpy as np
import pytest

from medshield.secure.elgamal import (
    TOY_GROUP,
    EncryptedWeights,
    encrypt,
    keygen,
    secconv_party,
    secconv_reference,
)
from medshield.secure.elgamal.engine import _Zq

G = TOY_GROUP


def _setup(rng, x: np.ndarray, w: np.ndarray):
    key = keygen(G, rng)
    zq = _Zq(G)
    xi = zq.from_signed(x)
    (x0, x1), (s0, s1) = zq.share(xi, rng), zq.share(zq.mul_scalar(xi, key.sk), rng)
    return encrypt(key, w, rng), (x0, s0), (x1, s1)


@pytest.mark.parametrize("party", [0, 1])
def test_fast_secconv_equals_reference(party, rng) -> None:
    x = np.array([[1, -2, 3], [0, 4, -1]])
    w = np.array([[2, -1], [0, 3], [-2, 1]])
    ct, sh0, sh1 = _setup(rng, x, w)
    xs, sxs = (sh0, sh1)[party]
    fast, _ = secconv_party(G, party, xs, sxs, EncryptedWeights(ct), dp_bits=8, max_steps=1 << 14)
    slow = secconv_reference(G, party, xs, sxs, ct, dp_bits=8, max_steps=1 << 14)
    assert np.array_equal(fast, slow)


def test_shares_sum_to_the_dot_product(rng) -> None:
    gen = np.random.default_rng(0)
    x = gen.integers(-5, 6, size=(6, 8))
    w = gen.integers(-4, 5, size=(8, 3))
    ct, (x0, s0), (x1, s1) = _setup(rng, x, w)
    enc = EncryptedWeights(ct)
    y0, ok0 = secconv_party(G, 0, x0, s0, enc, dp_bits=14, max_steps=1 << 18)
    y1, ok1 = secconv_party(G, 1, x1, s1, enc, dp_bits=14, max_steps=1 << 18)
    assert ok0.all() and ok1.all()
    assert np.array_equal(y0 + y1, x @ w)  # |x w| < 200: failure prob ~1 % in total, seeded
    assert np.abs(y1).max() > np.abs(x @ w).max()  # the shares are walk lengths, not the values
