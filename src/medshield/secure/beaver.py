"""Beaver triples: element-wise and matrix products of shared values (Beaver, CRYPTO 1991).

A triple ``(A, B, C = A * B)`` shared by the dealer lets the servers multiply shared ``X``
and ``Y`` in one round: they open ``E = X - A`` and ``F = Y - B`` (uniform, so they reveal
nothing) and compute ``[XY] = [C] + E [B] + [A] F + E F`` (the last term by server 0 only).
For matrices, ``*`` is ``@`` and the formula keeps the operand order.

Weight-aware matrix triples (what the secure layers use). In PE-HEALTH the dealer is the
healthcare centre, which owns the weights ``W``. For a layer ``Y = X W`` it can therefore
use ``B = W`` itself: ``F = W - B = 0`` is never opened, and ``[Y] = E [W] + [A W]``. The
servers hold additive shares of ``W`` (given once by :meth:`HealthcareCentre.share_model`),
the dealer ships shares of ``A`` (shape of the layer input) and ``C = A W`` (shape of the
output): one triple per layer per batch. A convolution is the same with ``@`` replaced by
the im2col product (:func:`medshield.secure.layers.affine`). Online cost: one round and
``l`` bits per *input* element and server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from medshield.secure.comm import Peer
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import U64, Ring, ring_matmul
from medshield.secure.sharing import share

__all__ = [
    "deal_triple",
    "deal_matrix_triple",
    "beaver_mul",
    "beaver_matmul",
    "beaver_product_known",
]

Triple = dict[str, Any]
Bilinear = Callable[[U64, U64], U64]


def _pair(values: dict[str, U64], ring: Ring, rng: RandomSource) -> tuple[Triple, Triple]:
    t0: Triple = {}
    t1: Triple = {}
    for key, v in values.items():
        t0[key], t1[key] = share(v, ring, rng)
    return t0, t1


def deal_triple(
    shape: tuple[int, ...], ring: Ring, rng: RandomSource
) -> tuple[Triple, Triple]:
    """Shares of ``(a, b, c = a * b)`` (element-wise), ring arrays of ``shape``."""
    a = rng.ring(shape, ring.bits)
    b = rng.ring(shape, ring.bits)
    return _pair({"a": a, "b": b, "c": ring.mul(a, b)}, ring, rng)


def deal_matrix_triple(
    a_shape: tuple[int, int],
    b_shape: tuple[int, int],
    ring: Ring,
    rng: RandomSource,
) -> tuple[Triple, Triple]:
    """Shares of ``(A, B, C = A @ B)`` for ``A`` of ``a_shape`` and ``B`` of ``b_shape``."""
    if a_shape[1] != b_shape[0]:
        raise ValueError(f"cannot multiply {a_shape} by {b_shape}")
    a = rng.ring(a_shape, ring.bits)
    b = rng.ring(b_shape, ring.bits)
    return _pair({"a": a, "b": b, "c": ring_matmul(a, b, ring.bits)}, ring, rng)


def _open_two(peer: Peer, ring: Ring, e: U64, f: U64) -> tuple[U64, U64]:
    mine = np.concatenate([e.ravel(), f.ravel()])
    both = peer.open_ring(mine, ring)
    return both[: e.size].reshape(e.shape), both[e.size :].reshape(f.shape)


def _beaver(
    peer: Peer, ring: Ring, x: U64, y: U64, t: Triple, op: Bilinear
) -> U64:
    e, f = _open_two(peer, ring, ring.sub(x, t["a"]), ring.sub(y, t["b"]))
    z = t["c"] + op(e, t["b"]) + op(t["a"], f)
    if peer.party == 0:
        z = z + op(e, f)
    return ring.reduce(z)


def beaver_mul(peer: Peer, ring: Ring, x: U64, y: U64, triple: Triple) -> U64:
    """This server's share of ``x * y`` (element-wise), one round."""
    return _beaver(peer, ring, x, y, triple, lambda u, v: np.multiply(u, v))


def beaver_matmul(peer: Peer, ring: Ring, x: U64, y: U64, triple: Triple) -> U64:
    """This server's share of ``x @ y``, one round."""
    return _beaver(peer, ring, x, y, triple, lambda u, v: ring_matmul(u, v, ring.bits))


def beaver_product_known(
    peer: Peer, ring: Ring, x: U64, w_share: Any, mask: U64, product: U64, op: Callable[[U64, Any], U64]
) -> U64:
    """Share of ``op(x, W)`` with a weight-aware triple (``B = W`` known to the dealer).

    Parameters
    ----------
    x
        This server's share of the input.
    w_share
        This server's share of ``W`` in whatever form ``op`` takes (e.g. a
        :class:`~medshield.secure.ring.RingMatrix`).
    mask, product
        This server's shares of the triple's ``A`` (input shape) and ``C = op(A, W)``.
    op
        The bilinear map, linear in each argument (``@``, a convolution).

    Returns
    -------
    Ring array: the share of ``op(x, W)``; one round, ``x.size`` ring elements sent.
    """
    e = peer.open_ring(ring.sub(x, mask), ring)
    return ring.reduce(op(e, w_share) + product)
