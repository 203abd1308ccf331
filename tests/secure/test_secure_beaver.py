"""Beaver triples: element-wise and matrix products of two shared values."""

from __future__ import annotations

import numpy as np
import pytest

from medshield.secure.beaver import (
    beaver_matmul,
    beaver_mul,
    beaver_product_known,
    deal_matrix_triple,
    deal_triple,
)
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import Ring, RingMatrix, ring_matmul
from medshield.secure.sharing import reconstruct, share


@pytest.mark.parametrize("bits", [32, 64])
def test_elementwise_triple_product(bits: int, rng: RandomSource, two_party) -> None:
    ring = Ring(bits)
    x, y = rng.ring((4, 6), bits), rng.ring((4, 6), bits)
    xs, ys = share(x, ring, rng), share(y, ring, rng)
    t0, t1 = deal_triple(x.shape, ring, rng)
    assert np.array_equal(reconstruct(t0["c"], t1["c"], ring),
                          ring.mul(reconstruct(t0["a"], t1["a"], ring), reconstruct(t0["b"], t1["b"], ring)))
    (z0, z1), (st, _) = two_party(
        lambda p: beaver_mul(p, ring, xs[p.party], ys[p.party], (t0, t1)[p.party])
    )
    assert np.array_equal(reconstruct(z0, z1, ring), ring.mul(x, y))
    assert st.rounds == 1


def test_matrix_triple_product(rng: RandomSource, two_party) -> None:
    ring = Ring(64)
    x, y = rng.ring((5, 7), 64), rng.ring((7, 3), 64)
    xs, ys = share(x, ring, rng), share(y, ring, rng)
    t0, t1 = deal_matrix_triple((5, 7), (7, 3), ring, rng)
    (z0, z1), _ = two_party(
        lambda p: beaver_matmul(p, ring, xs[p.party], ys[p.party], (t0, t1)[p.party])
    )
    assert np.array_equal(reconstruct(z0, z1, ring), ring_matmul(x, y, 64))
    with pytest.raises(ValueError, match="cannot multiply"):
        deal_matrix_triple((2, 3), (4, 5), ring, rng)


def test_weight_aware_triple_needs_only_the_input_opened(rng: RandomSource, two_party) -> None:
    """B = W known to the dealer: one round, the input's size on the wire, W never opened."""
    ring = Ring(32)
    x, w = rng.ring((9, 20), 32), rng.ring((20, 16), 32)
    a = rng.ring(x.shape, 32)
    xs, ws = share(x, ring, rng), share(w, ring, rng)
    a_sh, c_sh = share(a, ring, rng), share(ring_matmul(a, w, 32), ring, rng)

    def party(p):
        i = p.party
        return beaver_product_known(p, ring, xs[i], RingMatrix(ws[i], 32), a_sh[i], c_sh[i],
                                    lambda e, m: m.matmul(e))

    (z0, z1), (st, _) = two_party(party)
    assert np.array_equal(reconstruct(z0, z1, ring), ring_matmul(x, w, 32))
    assert st.rounds == 1 and x.size * 4 <= st.bytes_sent <= x.size * 4 + 200
