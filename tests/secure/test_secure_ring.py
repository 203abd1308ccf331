"""Ring Z_2^l: fixed-point encoding, wrap-around, wire packing and the exact matmul."""

from __future__ import annotations

import numpy as np
import pytest

from medshield.secure.ring import FixedPointOverflow, Ring, RingMatrix, ring_matmul


@pytest.mark.parametrize("bits,frac", [(64, 16), (32, 12), (24, 8)])
def test_encode_decode_round_trip_within_half_ulp(bits: int, frac: int) -> None:
    ring = Ring(bits)
    x = np.random.default_rng(0).uniform(-50, 50, size=(7, 11))
    back = ring.decode(ring.encode(x, frac), frac)
    assert back.shape == x.shape
    assert np.abs(back - x).max() <= 2.0 ** -(frac + 1) + 1e-12
    # exact for representable values, including negatives and the extremes (those that a
    # float64 holds exactly: bits - 1 <= 53)
    top = 2.0 ** (bits - 1 - frac)
    exact = np.array([0.0, -1.0, 2.0**-frac, -top, top - 2.0**-frac if bits <= 53 else top / 2])
    assert np.array_equal(ring.decode(ring.encode(exact, frac), frac), exact)


def test_encoding_is_twos_complement_mod_2l() -> None:
    ring = Ring(32)
    enc = ring.encode([-1.0, 1.0, -0.5], 4)
    assert enc.dtype == np.uint32  # uint32 storage for rings of at most 32 bits
    assert enc.tolist() == [2**32 - 16, 16, 2**32 - 8]
    assert Ring(64).encode([-1.0], 4).tolist() == [2**64 - 16]
    assert Ring(64).dtype == np.uint64 and Ring(40).dtype == np.uint64
    assert Ring(24).encode([-1.0], 4).tolist() == [2**24 - 16]


@pytest.mark.parametrize("bits", [64, 32])
def test_overflow_raises_with_a_fix_in_the_message(bits: int) -> None:
    ring = Ring(bits)
    limit = ring.max_value(12)
    ring.encode([limit - (2.0**-12 if bits <= 53 else 2.0**12), -limit], 12)  # extremes fit
    with pytest.raises(FixedPointOverflow, match="frac_bits|ring"):
        ring.encode([limit], 12)
    with pytest.raises(FixedPointOverflow):
        ring.encode([-limit - 1.0], 12)
    with pytest.raises(FixedPointOverflow, match="NaN"):
        ring.encode([np.nan], 12)


def test_wrap_mode_reduces_modulo_the_ring() -> None:
    ring = Ring(16)
    # 2^15 does not fit the signed range: in wrap mode it becomes -2^15
    assert ring.to_signed(ring.encode([2.0**15], 0, on_overflow="wrap")).tolist() == [-(2**15)]
    assert ring.encode([2.0**16 + 3], 0, on_overflow="wrap").tolist() == [3]


def test_ring_arithmetic_wraps_deliberately_and_silently() -> None:
    r64, r32, r20 = Ring(64), Ring(32), Ring(20)
    top = np.array([2**63], dtype=np.uint64)
    assert r64.add(top, top).tolist() == [0]  # 2^64 == 0
    assert r64.mul(top, np.array([2], dtype=np.uint64)).tolist() == [0]
    assert r64.to_signed(r64.sub(np.zeros(1, np.uint64), np.ones(1, np.uint64))).tolist() == [-1]
    big = np.array([2**32 - 1], dtype=np.uint64)
    assert r32.add(big, np.ones(1, np.uint64)).tolist() == [0]
    assert r32.neg(np.ones(1, np.uint64)).tolist() == [2**32 - 1]
    assert r32.to_signed(np.array([2**31], dtype=np.uint64)).tolist() == [-(2**31)]
    # a ring narrower than its dtype reduces explicitly
    assert r20.add(np.array([2**20 - 1], np.uint32), np.array([5], np.uint32)).tolist() == [4]
    assert r20.from_signed([-1]).tolist() == [2**20 - 1]
    # reduce takes any integer input modulo 2^l and refuses floats
    assert r32.reduce(np.array([-1], dtype=np.int8)).tolist() == [2**32 - 1]
    with pytest.raises(TypeError, match="integers"):
        r32.reduce(np.array([1.5]))


@pytest.mark.parametrize("bits", [8, 16, 24, 32, 40, 64])
def test_pack_unpack_round_trip_and_size(bits: int) -> None:
    ring = Ring(bits)
    a = ring.reduce(np.random.default_rng(bits).integers(0, 2**63, size=(3, 5), dtype=np.uint64))
    buf = ring.pack(a)
    assert len(buf) == a.size * ((bits + 7) // 8)
    assert np.array_equal(ring.unpack(buf, a.shape), a)
    with pytest.raises(ValueError, match="different programs"):
        ring.unpack(buf[:-1], a.shape)


def _slow_matmul(a: np.ndarray, b: np.ndarray, bits: int) -> np.ndarray:
    out = np.zeros((a.shape[0], b.shape[1]), dtype=object)
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = sum(int(a[i, k]) * int(b[k, j]) for k in range(a.shape[1])) % (1 << bits)
    return out


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("path", ["int", "float"])
def test_ring_matmul_matches_python_integers(bits: int, path: str) -> None:
    gen = np.random.default_rng(bits)
    ring = Ring(bits)
    a = ring.reduce(gen.integers(0, 2**63, size=(9, 37), dtype=np.uint64) * np.uint64(3))
    b = ring.reduce(gen.integers(0, 2**63, size=(37, 17), dtype=np.uint64) * np.uint64(5))
    mat = RingMatrix(b, bits)
    mat.use_float = lambda rows: path == "float"  # type: ignore[method-assign]
    got = mat.matmul(a)
    assert got.dtype == ring.dtype
    assert np.array_equal(got.astype(object), _slow_matmul(a, b, bits))


@pytest.mark.parametrize("bits", [24, 32, 64])
def test_float_limb_matmul_equals_integer_matmul_on_a_large_product(bits: int) -> None:
    gen = np.random.default_rng(7)
    ring = Ring(bits)
    a = ring.reduce(gen.integers(0, 2**63, size=(300, 845), dtype=np.uint64))
    b = ring.reduce(gen.integers(0, 2**63, size=(845, 256), dtype=np.uint64))
    mat = RingMatrix(b, bits)
    assert mat.use_float(300)
    assert np.array_equal(mat.matmul(a), ring.reduce(np.matmul(a, b)))  # numpy wraps exactly
    assert np.array_equal(ring_matmul(a[:3], b, bits), ring.reduce(np.matmul(a[:3], b)))
    assert not mat.use_float(3)


def test_ring_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="8 to 64"):
        Ring(65)
    with pytest.raises(ValueError, match="frac_bits"):
        Ring(32).encode([1.0], 31)
