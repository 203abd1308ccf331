"""Additive 2-out-of-2 secret sharing over ``Z_{2^l}`` and XOR sharing of bits.

PE-HEALTH section II-B, "Additive Secret Sharing": a secret ``x`` is split into
``x' = u`` with ``u`` uniform and ``x'' = x - u mod 2^l``; each compute server gets one
share. Either share alone is a uniform ring element, independent of ``x`` (perfect
secrecy against one non-colluding server); the two together give ``x = x' + x''``.
Bits are shared the same way over ``Z_2`` (``b = b' XOR b''``).

This module needs only numpy, so the sensor (PE-HEALTH "HMS") can run it: see
:func:`share_input`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medshield.secure.randomness import RandomSource
from medshield.secure.ring import U64, Ring

__all__ = ["share", "reconstruct", "share_bits", "reconstruct_bits", "share_input"]


def share(x: ArrayLike, ring: Ring, rng: RandomSource) -> tuple[U64, U64]:
    """Split ring elements ``x`` into two additive shares.

    Parameters
    ----------
    x
        Ring elements (already encoded; see :meth:`Ring.encode`), any shape.
    ring
        The ring ``Z_{2^l}``.
    rng
        Source of the uniform mask (use a secure one for real data).

    Returns
    -------
    (x0, x1)
        ``x0`` uniform, ``x1 = x - x0 mod 2^l``; ring arrays of ``x``'s shape.
    """
    xr = ring.reduce(x)
    x0 = rng.ring(xr.shape, ring.bits)
    return x0, ring.sub(xr, x0)


def reconstruct(x0: ArrayLike, x1: ArrayLike, ring: Ring) -> U64:
    """``x0 + x1 mod 2^l``: the secret from both shares."""
    a, b = ring.reduce(x0), ring.reduce(x1)
    if a.shape != b.shape:
        raise ValueError(f"share shapes differ: {a.shape} vs {b.shape}")
    return ring.add(a, b)


def share_bits(b: ArrayLike, rng: RandomSource) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """XOR-share bits (``uint8`` 0/1): ``b0`` uniform, ``b1 = b XOR b0``."""
    bb = np.asarray(b, dtype=np.uint8)
    if bb.size and bb.max() > 1:
        raise ValueError("share_bits expects 0/1 values")
    b0 = rng.bits(bb.shape)
    return b0, b0 ^ bb


def reconstruct_bits(b0: ArrayLike, b1: ArrayLike) -> NDArray[np.uint8]:
    """``b0 XOR b1``."""
    return np.bitwise_xor(np.asarray(b0, dtype=np.uint8), np.asarray(b1, dtype=np.uint8))


def share_input(
    x: ArrayLike,
    *,
    frac_bits: int,
    ring_bits: int = 64,
    rng: RandomSource | None = None,
) -> tuple[U64, U64]:
    """The sensor's upload: encode real readings in fixed point and share them.

    PE-HEALTH section IV-B ("Sensor Data Upload"): the sensor shares each reading and sends
    one share to each compute server. Needs numpy only.

    Parameters
    ----------
    x
        Real-valued readings, e.g. a batch of images ``(N, C, H, W)``.
    frac_bits, ring_bits
        The public fixed-point parameters of the deployed program
        (``Program.frac_bits`` and ``Program.ring_bits``).
    rng
        Randomness; ``None`` means secure (OS entropy).

    Returns
    -------
    (x0, x1)
        The shares for server 0 and server 1.

    Raises
    ------
    FixedPointOverflow
        If a reading does not fit the ring at this precision.
    """
    ring = Ring(ring_bits)
    return share(ring.encode(x, frac_bits), ring, rng if rng is not None else RandomSource())
