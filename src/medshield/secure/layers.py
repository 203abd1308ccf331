"""Secure layers: what each server does for one program step, and the dealer's part.

PE-HEALTH section IV-C. Each step has two functions:

* ``deal_*(op, batch, ...)``: the healthcare centre's offline material for a batch, returned
  as ``(material for server 0, material for server 1)``;
* ``*_online(op, peer, ring, x, ...)``: one server's evaluation on its share ``x``
  (ring array of shape ``(batch, *op.in_shape)``), exchanging messages through ``peer``.

======================  ===============================  ======  ===========================
step                    how                              rounds  online bits per server
======================  ===============================  ======  ===========================
Linear, Conv1d/2d       weight-aware matrix Beaver       1       ``l`` per input element
                        triple (:mod:`.beaver`); conv
                        as im2col @ W
ReLU / rescale /        masked comparison, exact         3 (4)   49 per element (``l = 32``),
square                  truncation (:mod:`.gates`)               100 (``l = 64``)
MaxPool (k x k)         tournament of ``max(a, b) =      3 (4)   as ReLU, per compared pair
                        b + relu(a - b)``                per
                                                         level
AvgPool                 window sums, scale change        0       0
Flatten / Unflatten     reshape                          0       0
======================  ===============================  ======  ===========================

Rounds in parentheses are for ``l = 64``.

``affine`` is the plaintext ring version of Linear/Conv; the dealer uses it with the real
weights (to build ``C = A W``) and each server with its share of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from medshield.secure.beaver import beaver_product_known
from medshield.secure.comm import Peer
from medshield.secure.gates import deal_gate, gate_online
from medshield.secure.program import AvgPoolOp, ConvOp, GateOp, LinearOp, MaxPoolOp
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import U64, Ring, RingMatrix
from medshield.secure.sharing import share

__all__ = [
    "windows",
    "weight_matrix",
    "affine",
    "deal_affine",
    "affine_online",
    "avgpool_local",
    "deal_gate_op",
    "gate_op_online",
    "deal_maxpool",
    "maxpool_online",
]

Material = dict[str, Any]


def _as_2d(x: np.ndarray, dims: int) -> np.ndarray:
    """``(B, C, L)`` -> ``(B, C, 1, L)`` for 1-d layers."""
    return x[:, :, None, :] if dims == 1 else x


def windows(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Sliding windows of ``x`` ``(B, C, H, W)`` with zero padding.

    Returns
    -------
    ndarray ``(B, C, OH, OW, kh * kw)`` (a copy), in torch's window order.
    """
    ph, pw = padding
    if ph or pw:  # (np.pad is slow for small arrays)
        padded = np.zeros(x.shape[:2] + (x.shape[2] + 2 * ph, x.shape[3] + 2 * pw), x.dtype)
        padded[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]] = x
        x = padded
    win = sliding_window_view(x, kernel, axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    b, c, oh, ow = win.shape[:4]
    return win.reshape(b, c, oh, ow, kernel[0] * kernel[1])


def weight_matrix(op: LinearOp | ConvOp, w: U64, ring: Ring) -> RingMatrix:
    """The right operand of the layer's product, ``(fan_in, out)``, from torch-layout ``w``."""
    if isinstance(op, LinearOp):
        return RingMatrix(np.ascontiguousarray(w.T), ring.bits)
    return RingMatrix(np.ascontiguousarray(w.reshape(op.out_channels, -1).T), ring.bits)


def affine(op: LinearOp | ConvOp, x: U64, wmat: RingMatrix, ring: Ring) -> U64:
    """The layer's product without bias, modulo ``2^l``.

    Parameters
    ----------
    x
        Ring elements ``(B, *op.in_shape)``.
    wmat
        :func:`weight_matrix` of the (shared or real) weights.

    Returns
    -------
    ring array ``(B, *op.out_shape)``.
    """
    bsz = x.shape[0]
    if isinstance(op, LinearOp):
        return ring.reduce(wmat.matmul(x))
    cols = windows(_as_2d(x, op.dims), op.kernel, op.stride, op.padding)
    _, c, oh, ow, k = cols.shape
    patches = cols.transpose(0, 2, 3, 1, 4).reshape(bsz * oh * ow, c * k)
    y = wmat.matmul(patches).reshape(bsz, oh, ow, op.out_channels).transpose(0, 3, 1, 2)
    return ring.reduce(np.ascontiguousarray(y).reshape((bsz, *op.out_shape)))


def deal_affine(
    op: LinearOp | ConvOp, batch: int, weights: dict[str, U64], ring: Ring, rng: RandomSource
) -> tuple[Material, Material]:
    """A weight-aware matrix triple: shares of a mask ``A`` and of ``C = affine(A, W)``."""
    a = rng.ring((batch, *op.in_shape), ring.bits)
    c = affine(op, a, weight_matrix(op, weights["w"], ring), ring)
    a0, a1 = share(a, ring, rng)
    c0, c1 = share(c, ring, rng)
    return {"a": a0, "c": c0}, {"a": a1, "c": c1}


def affine_online(
    op: LinearOp | ConvOp,
    peer: Peer,
    ring: Ring,
    x: U64,
    layer: dict[str, Any],
    mat: Material,
) -> U64:
    """Share of ``x W^T + b`` (or the convolution): open ``x - A``, then local work.

    ``layer`` holds this server's weight share as a :class:`RingMatrix` (``"wmat"``) and its
    bias share (``"b"``, or absent).
    """

    def product(e: U64, wmat: RingMatrix) -> U64:
        return affine(op, e, wmat, ring)

    y = beaver_product_known(peer, ring, x, layer["wmat"], mat["a"], mat["c"], product)
    if "b" in layer:
        bias = layer["b"]
        y = y + (bias if isinstance(op, LinearOp) else bias.reshape((-1,) + (1,) * (y.ndim - 2)))
    return ring.reduce(y)


def avgpool_local(op: AvgPoolOp, x: U64, ring: Ring) -> U64:
    """Window sums times ``op.multiplier`` (no communication)."""
    win = windows(_as_2d(x, op.dims), op.kernel, op.stride, op.padding)
    y = win.sum(axis=-1, dtype=ring.dtype)
    if op.multiplier != 1:
        y = y * ring.scalar(op.multiplier)
    return ring.reduce(y.reshape((x.shape[0], *op.out_shape)))


def deal_gate_op(
    op: GateOp, batch: int, ring: Ring, rng: RandomSource
) -> tuple[Material, Material]:
    """Material for one element-wise gate layer."""
    n = batch * int(np.prod(op.in_shape))
    return deal_gate(op.gate, n, op.shift, ring, rng)  # type: ignore[arg-type]


def gate_op_online(op: GateOp, peer: Peer, ring: Ring, x: U64, mat: Material) -> U64:
    """Element-wise gate on a whole tensor."""
    z = gate_online(op.gate, op.shift, peer, ring, x.reshape(-1), mat)  # type: ignore[arg-type]
    return z.reshape((x.shape[0], *op.out_shape))


def _tournament_sizes(op: MaxPoolOp, batch: int) -> list[int]:
    cells = batch * int(np.prod(op.out_shape))
    sizes, k = [], op.window
    while k > 1:
        sizes.append(cells * (k // 2))
        k = k // 2 + k % 2
    return sizes


def deal_maxpool(
    op: MaxPoolOp, batch: int, ring: Ring, rng: RandomSource
) -> tuple[Material, Material]:
    """Material for each tournament level (``level{i}`` sub-dicts)."""
    m0: Material = {}
    m1: Material = {}
    for i, n in enumerate(_tournament_sizes(op, batch)):
        m0[f"level{i}"], m1[f"level{i}"] = deal_gate("relu", n, 0, ring, rng)
    return m0, m1


def maxpool_online(op: MaxPoolOp, peer: Peer, ring: Ring, x: U64, mat: Material) -> U64:
    """Max pooling by pairwise maxima, ``max(a, b) = b + relu(a - b)``, one gate per level."""
    v = windows(_as_2d(x, op.dims), op.kernel, op.stride, (0, 0))
    level = 0
    while v.shape[-1] > 1:
        k = v.shape[-1]
        a, b = v[..., 0 : k - 1 : 2], v[..., 1:k:2]
        diff = ring.sub(a, b)
        z = gate_online("relu", 0, peer, ring, diff.reshape(-1), mat[f"level{level}"])
        best = ring.add(b, z.reshape(b.shape))
        v = np.concatenate([best, v[..., k - 1 :]], axis=-1) if k % 2 else best
        level += 1
    return v[..., 0].reshape((x.shape[0], *op.out_shape))
