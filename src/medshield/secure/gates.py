"""Non-linear gates on shared values: ReLU, exact truncation, square, and the max of pairs.

PE-HEALTH Protocol 3 (SecReLU) and SecPool, plus the truncation that fixed-point products
need (section II-B "Data Format": a product carries ``2f`` fractional bits). All gates
start from the masked comparison of :mod:`medshield.secure.comparison`: the servers open
``m = x + 2^K + r mod 2^l`` (``K = l - 1``) and learn ``c``, ``v`` with
``beta = [m mod 2^K < r mod 2^K] = c xor rho`` for a dealer bit ``rho = rho_v``. With
``xh = x + 2^K`` (``x`` read as signed, so ``xh`` is in ``[0, 2^l)``), ``q = bit K of r``
and ``mK = bit K of m``:

* sign: ``s = [x >= 0] = bit K of xh = mK xor q xor beta``;
* wrap: ``w = [m < r] = mK ? (q and beta) : (q or beta)``, so that over the *integers*
  ``xh = m - r + 2^l w``; hence for a shift ``t``::

      x >> t  =  (m >> t) - (r >> t) + 2^(l-t) w - 2^(K-t)      (+1 with prob. frac)

  is an exact truncation (up to one unit of stochastic rounding: the dropped low bits of
  ``m`` and ``r`` leave a borrow we do not compute, which rounds up with probability equal
  to the dropped fraction). There is no SecureML-style failure with probability
  ``|x| / 2^l``: every ``x`` in the signed range of the ring is handled exactly.

Every output is a polynomial in dealer-known values (``q``, ``rho``, ``R = r >> t``) with
public coefficients (``c``, ``m``), so the dealer ships additive shares of the needed
*monomials* (for each of the candidate bits ``rho_v`` where ``rho`` occurs) and the servers
finish locally, with no further round. For ReLU (``D = 2^(l-t)``, ``C = 2^(K-t)``,
``M = m >> t``, ``a = mK xor c``; ``beta = c + (1 - 2c) rho`` as an integer)::

    s  = a + (1 - 2a)(q + rho - 2 q rho)
    sR = a R + (1 - 2a)(qR + rho R - 2 q rho R)
    u  = s and w = (mK == 0) ? s : (c q + (1 - 2c) q rho)
    relu(x) >> t = s (M - C) - sR + D u

Gates and cost per element (``l = 32``; online bits per server; dealer arithmetic values per
server on top of the comparison's 44 bytes; for ``l = 64`` the comparison takes 4 rounds and
one candidate ``rho``, so the ``4 x`` below become ``1 x``):

========  ======  ============================  ==============================================
gate      rounds  online bits                   dealer values (``l`` bits each)
========  ======  ============================  ==============================================
relu      3       32 + 14 + 3 = 49              q, R, qR + 4 x (rho, q rho, rho R, q rho R): 19
rescale   3       49                            q, R + 4 x (rho, q rho): 10
square    3       49 (1 round, 32 bits if t=0)  q, R, R^2, qR + 4 x (rho, q rho, rho R,
                                                q rho R): 20 (just R^2 if t = 0)
========  ======  ============================  ==============================================

The max of two shared values is ``b + relu(a - b)`` (``t = 0``), which is how max pooling
is evaluated (a tournament, one gate per level).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from medshield.secure.comm import Peer
from medshield.secure.comparison import CompareLayout, compare_online, deal_compare
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import U64, Ring

__all__ = ["GateKind", "MONOMIALS", "deal_gate", "gate_online", "gate_rounds"]

GateKind = Literal["relu", "rescale", "square"]
Material = dict[str, Any]

#: Dealer monomials of each gate with ``t > 0``: (independent of rho, one set per rho_v).
#: A square with ``t = 0`` needs only ``R2`` (``R = r``).
MONOMIALS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "relu": (("q", "R", "qR"), ("rho", "qrho", "rhoR", "qrhoR")),
    "rescale": (("q", "R"), ("rho", "qrho")),
    "square": (("q", "R", "R2", "qR"), ("rho", "qrho", "rhoR", "qrhoR")),
}


def _needs_tree(kind: str, shift: int) -> bool:
    return not (kind == "square" and shift == 0)


def _check(kind: str, shift: int, ring: Ring) -> None:
    if kind not in MONOMIALS:
        raise ValueError(f"unknown gate {kind!r}; use one of {', '.join(MONOMIALS)}")
    if not 0 <= shift < ring.bits - 1:
        raise ValueError(f"shift must be from 0 to {ring.bits - 2}, got {shift}")
    if kind == "rescale" and shift == 0:
        raise ValueError("a rescale gate with shift 0 is the identity; do not create it")


def gate_rounds(kind: str, shift: int, ring_bits: int) -> int:
    """Online rounds of one gate."""
    return CompareLayout(ring_bits).rounds if _needs_tree(kind, shift) else 1


def _share_ring(v: U64, ring: Ring, rng: RandomSource) -> tuple[U64, U64]:
    s0 = rng.ring(v.shape, ring.bits)
    return s0, ring.sub(v, s0)


def deal_gate(
    kind: GateKind, n: int, shift: int, ring: Ring, rng: RandomSource
) -> tuple[Material, Material]:
    """The dealer's material for ``n`` gates of ``kind`` with truncation ``shift``.

    Returns
    -------
    (material for server 0, material for server 1)
        Comparison material (see :func:`~medshield.secure.comparison.deal_compare`), plus
        additive shares of the gate's monomials (:data:`MONOMIALS`): ``mono``
        (ring array ``(k, n)``) and ``mono_v`` (``(k', n, variants)``, one value per
        candidate bit ``rho_v``; see :class:`~medshield.secure.comparison.CompareLayout`).
    """
    _check(kind, shift, ring)
    if not _needs_tree(kind, shift):
        r = rng.ring(n, ring.bits)
        m0: Material = {}
        m1: Material = {}
        m0["r"], m1["r"] = _share_ring(r, ring, rng)
        m0["mono"], m1["mono"] = _share_ring(ring.mul(r, r)[None, :], ring, rng)
        return m0, m1
    m0, m1, sec = deal_compare(n, ring, rng)
    dt = ring.dtype.type
    r = sec.r
    q = (r >> dt(ring.bits - 1)) & dt(1)
    big_r = r >> dt(shift)
    fixed = {"q": q, "R": big_r, "R2": big_r * big_r, "qR": q * big_r}
    names_f, names_v = MONOMIALS[kind]
    mono = ring.reduce(np.stack([fixed[k] for k in names_f]))
    per_v = []
    for rho_bits in sec.rho:
        rho = rho_bits.astype(ring.dtype)
        var = {"rho": rho, "qrho": q * rho, "rhoR": rho * big_r, "qrhoR": q * rho * big_r}
        per_v.append(np.stack([var[k] for k in names_v]))
    mono_v = ring.reduce(np.stack(per_v, axis=-1))  # (k', n, variants): candidates adjacent
    m0["mono"], m1["mono"] = _share_ring(mono, ring, rng)
    m0["mono_v"], m1["mono_v"] = _share_ring(mono_v, ring, rng)
    return m0, m1


def gate_online(
    kind: GateKind, shift: int, peer: Peer, ring: Ring, x: U64, mat: Material
) -> U64:
    """Evaluate ``n`` gates on this server's shares ``x`` (ring array ``(n,)``).

    ``relu``: ``max(x, 0) >> shift``; ``rescale``: ``x >> shift``; ``square``:
    ``(x >> shift)^2``. All on fixed-point values read as signed ring elements; the
    truncation rounds up by one unit with probability equal to the dropped fraction.

    Returns
    -------
    ring array ``(n,)``
        This server's additive share of the result, reduced modulo ``2^l``.
    """
    _check(kind, shift, ring)
    p = peer.party
    dt = ring.dtype.type
    one, two = dt(1), dt(2)
    pub = dt(1 if p == 0 else 0)
    big_k = ring.bits - 1
    c = ring.scalar(1 << (big_k - shift))
    d = ring.scalar(1 << (ring.bits - shift))

    if not _needs_tree(kind, shift):
        offset = ring.scalar(1 << big_k if p == 0 else 0)
        m = peer.open_ring(ring.reduce(x + offset + mat["r"]), ring)
        a_pub = m - c
        return ring.reduce(pub * a_pub * a_pub - two * a_pub * mat["r"] + mat["mono"][0])

    m, c_bit, idx = compare_online(peer, ring, x, mat)
    names_f, names_v = MONOMIALS[kind]
    mono = dict(zip(names_f, mat["mono"], strict=True))
    mv = mat["mono_v"]  # (k', n, variants)
    n, nv = x.shape[0], mv.shape[2]
    if nv == 1:
        sel = mv[..., 0]
    else:
        sel = np.take(mv.reshape(mv.shape[0], nv * n), np.arange(0, nv * n, nv) + idx, axis=1)
    mono.update(zip(names_v, sel, strict=True))

    e = c_bit.astype(ring.dtype)
    m_k = (m >> dt(big_k)) & one
    top_zero = m_k == 0
    ce = one - two * e  # 1 or -1
    q, rho, qrho, big_r = mono["q"], mono["rho"], mono["qrho"], mono["R"]
    q_beta = e * q + ce * qrho  # shares of q AND beta
    big_m = m >> dt(shift)

    if kind == "relu":
        a = m_k ^ e
        ca = one - two * a
        s = pub * a + ca * (q + rho - two * qrho)
        s_r = a * big_r + ca * (mono["qR"] + mono["rhoR"] - two * mono["qrhoR"])
        u = np.where(top_zero, s, q_beta)
        return ring.reduce(s * (big_m - c) - s_r + d * u)

    beta = pub * e + ce * rho
    wrap = np.where(top_zero, q + beta - q_beta, q_beta)
    if kind == "rescale":
        return ring.reduce(pub * (big_m - c) - big_r + d * wrap)

    # square: x_t = A - R + D w, A public
    a_pub = big_m - c
    r_beta = e * big_r + ce * mono["rhoR"]
    r_qbeta = e * mono["qR"] + ce * mono["qrhoR"]
    r_wrap = np.where(top_zero, mono["qR"] + r_beta - r_qbeta, r_qbeta)
    d2 = ring.scalar(1 << (2 * (ring.bits - shift)))
    return ring.reduce(
        pub * a_pub * a_pub
        - two * a_pub * big_r
        + mono["R2"]
        + (d2 + two * a_pub * d) * wrap
        - two * d * r_wrap
    )
