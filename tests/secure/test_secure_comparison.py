"""The dealer-assisted comparison and the gates built on it, against slow references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medshield.secure.comparison import (
    CompareLayout,
    compare_online,
    compare_reference,
    deal_compare,
)
from medshield.secure.gates import deal_gate, gate_online, gate_rounds
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import Ring
from medshield.secure.sharing import reconstruct, share


def _edge_values(bits: int, n: int, seed: int) -> np.ndarray:
    half = 2 ** (bits - 1)
    x = np.random.default_rng(seed).integers(-half, half, size=n, dtype=np.int64)
    x[:8] = [0, -1, 1, -half, half - 1, -half + 1, half - 2, 2]
    return x


@pytest.mark.parametrize("bits", [8, 16, 32, 40, 64])
def test_vectorised_comparison_matches_slow_reference_and_semantics(
    bits: int, rng: RandomSource, two_party
) -> None:
    ring = Ring(bits)
    n = 300
    x = ring.from_signed(_edge_values(bits, n, bits))
    x0, x1 = share(x, ring, rng)
    m0, m1, sec = deal_compare(n, ring, rng)
    (out0, out1), (st0, st1) = two_party(
        lambda peer: compare_online(peer, ring, (x0, x1)[peer.party], (m0, m1)[peer.party])
    )
    m, c, v = out0
    assert np.array_equal(out1[0], m) and np.array_equal(out1[1], c) and np.array_equal(out1[2], v)
    # bit for bit against the per-element simulation
    ref = compare_reference(ring, x0[:60], x1[:60], m0, m1)
    assert ref == [(int(m[i]), int(c[i]), int(v[i])) for i in range(60)]
    # semantics: c xor rho_v is the borrow of the K low bits, and m = x + 2^K + r
    k = bits - 1
    low = np.uint64((1 << k) - 1)
    beta = c ^ sec.rho[v, np.arange(n)]
    assert np.array_equal(beta.astype(bool), (m & low) < (sec.r & low))
    assert np.array_equal(m, ring.add(x + np.uint64(1 << k), sec.r))
    # documented cost: rounds and bits per element (module docstring table)
    lay = CompareLayout(bits)
    assert st0.rounds == st1.rounds == lay.rounds == {8: 2, 16: 3, 32: 3, 40: 4, 64: 4}[bits]
    expected_bits = {8: 8 + 3, 16: 16 + 7 + 1, 32: 32 + 14 + 3, 40: 40 + 28 + 1, 64: 64 + 35 + 1}
    assert lay.online_bits == expected_bits[bits]
    nb = (n + 7) // 8
    last = 3 if lay.final_nodes == 2 else 1
    payload = n * ((bits + 7) // 8) + 7 * sum(lay.levels()) * nb + last * nb
    assert payload <= st0.bytes_sent <= payload + 120 * lay.rounds  # + frame/codec headers


def test_opened_values_are_uniform_whatever_the_input(rng: RandomSource, two_party) -> None:
    """One server's view (m, c, v) has the same distribution for x = -5 and x = 1e6."""
    ring = Ring(32)
    n = 4000
    views = []
    for value in (-5, 10**6):
        x = ring.from_signed(np.full(n, value, dtype=np.int64))
        x0, x1 = share(x, ring, rng)
        m0, m1, _ = deal_compare(n, ring, rng)
        (out0, _), _ = two_party(
            lambda peer, x0=x0, x1=x1, m0=m0, m1=m1: compare_online(
                peer, ring, (x0, x1)[peer.party], (m0, m1)[peer.party]
            )
        )
        views.append(out0)
    for m, c, v in views:
        assert stats.chisquare(np.bincount((m >> np.uint64(28)).astype(int), minlength=16)).pvalue > 1e-4
        assert stats.chisquare(np.bincount(v, minlength=4)).pvalue > 1e-4
        assert abs(c.mean() - 0.5) < 0.05
    assert stats.ks_2samp(views[0][0].astype(float), views[1][0].astype(float)).pvalue > 1e-4


def _run_gate(kind, shift, ring, x_signed, rng, two_party):
    x0, x1 = share(ring.from_signed(x_signed), ring, rng)
    g0, g1 = deal_gate(kind, x_signed.size, shift, ring, rng)
    (z0, z1), (st0, _) = two_party(
        lambda peer: gate_online(kind, shift, peer, ring, (x0, x1)[peer.party], (g0, g1)[peer.party])
    )
    return ring.to_signed(reconstruct(z0, z1, ring)), st0


def _reference(kind: str, shift: int, x: np.ndarray, bits: int) -> list[int]:
    """Per element with Python ints: relu / shift / square (wrapped into the ring)."""
    out = []
    for v in x.tolist():
        t = v >> shift
        r = max(t, 0) if kind == "relu" else t if kind == "rescale" else t * t
        r %= 1 << bits
        out.append(r - (1 << bits) if r >= 1 << (bits - 1) else r)
    return out


@pytest.mark.parametrize("bits", [24, 32, 40, 64])  # 24, 40: rings narrower than their dtype
@pytest.mark.parametrize("kind,shift", [("relu", 0), ("relu", 12), ("rescale", 7), ("rescale", 12)])
def test_relu_and_truncation_are_exact_up_to_one_unit(
    bits: int, kind: str, shift: int, rng: RandomSource, two_party
) -> None:
    x = _edge_values(bits, 500, shift + bits)
    got, st = _run_gate(kind, shift, Ring(bits), x, rng, two_party)
    ref = np.array(_reference(kind, shift, x, bits), dtype=np.int64)
    diff = got - ref
    # stochastic rounding: +1 for some elements, never anything else, never for shift 0
    assert set(np.unique(diff).tolist()) <= ({0} if shift == 0 else {0, 1})
    if kind == "relu":
        assert np.all(got[x < 0] == 0) and np.all(got[x >= 0] >= 0)
    assert st.rounds == gate_rounds(kind, shift, bits)


@pytest.mark.parametrize("shift", [0, 12])
def test_square_gate_is_exact_up_to_rounding(shift: int, rng: RandomSource, two_party) -> None:
    bits = 64
    x = np.random.default_rng(shift).integers(-(2**40), 2**40, size=400, dtype=np.int64)
    if shift == 0:
        x = x >> 20  # keep x^2 inside the ring
    x[:3] = [0, -1, 1]
    got, st = _run_gate("square", shift, Ring(bits), x, rng, two_party)
    t = x >> shift
    assert np.all((got == t * t) | (got == (t + 1) * (t + 1)))
    assert st.rounds == (1 if shift == 0 else gate_rounds("square", shift, bits))


def test_stochastic_rounding_is_unbiased(rng: RandomSource, two_party) -> None:
    """x >> 4 for x = 16k + 4 rounds up about a quarter of the time."""
    x = np.full(4000, 16 * 9 + 4, dtype=np.int64)
    got, _ = _run_gate("rescale", 4, Ring(32), x, rng, two_party)
    assert set(np.unique(got).tolist()) <= {9, 10}
    assert abs((got == 10).mean() - 0.25) < 0.04


def test_gate_rejects_bad_parameters(rng: RandomSource) -> None:
    with pytest.raises(ValueError, match="identity"):
        deal_gate("rescale", 3, 0, Ring(32), rng)
    with pytest.raises(ValueError, match="unknown gate"):
        deal_gate("sigmoid", 3, 1, Ring(32), rng)  # type: ignore[arg-type]


def test_desynchronised_servers_fail_with_a_clear_error(two_party) -> None:
    ring = Ring(32)

    def party(peer):
        n = 10 if peer.party == 0 else 11  # e.g. material for different batch sizes
        return peer.open_ring(np.zeros(n, dtype=np.uint32), ring)

    with pytest.raises(ValueError, match="different programs or batch sizes"):
        two_party(party)

    def bad(peer):
        if peer.party == 0:
            peer.channel.send({"x": 1})
            return None
        return peer.exchange(b"abc")

    with pytest.raises(ValueError, match="without a 'd' payload"):
        two_party(bad)
