"""Dealer-assisted secure comparison: the borrow bit of a masked value, in three rounds.

This is the engine of SecReLU and SecPool (PE-HEALTH Protocol 3 and the max-pooling part of
section IV-C). PE-HEALTH calls a comparison "SecCmp" from prior work; we use the classic
masked-comparison construction with a trusted *offline* dealer (the healthcare centre), in
the style of SecureNN/ABY3's "open a masked value, compare it with the mask's bits":

1. The dealer draws a uniform mask ``r`` in ``Z_{2^l}`` and gives each server an additive
   share of it, plus XOR-shared tables derived from ``r`` (below).
2. Online, the servers open ``m = x + 2^(l-1) + r mod 2^l`` (one round, ``l`` bits per
   element each). ``m`` is uniform whatever ``x`` is, so it reveals nothing.
3. They compute the borrow ``beta = [m mod 2^K < r mod 2^K]``, ``K = l-1``, in the form
   ``beta = c xor rho`` with ``c`` public and ``rho`` a bit the *dealer* knows (one of up
   to four it prepared, selected by public values). The sign of ``x`` and the wrap-around
   needed for exact truncation follow from ``beta`` (:mod:`medshield.secure.gates`); since
   ``rho`` is dealer-known, the dealer can ship arithmetic shares of everything the gates
   multiply it with, so no separate bit-to-arithmetic round is needed.

Computing ``beta`` is a carry computation over the ``K`` low bits of ``m`` and ``r``:

* **digits (no communication).** Split the bits into 4-bit digits. For digit ``j``,
  ``G_j = [m_j < r_j]`` and ``P_j = [m_j == r_j]``. Because ``m`` is public these are
  lookups in dealer tables ``T_G[v] = [v < r_j]`` (the bitmask ``2^r_j - 1``) and
  ``T_P[v] = [v == r_j]`` (``2^r_j``), XOR-shared: each server reads bit ``m_j`` of its
  share of the tables.
* **4-ary levels (one round each).** Nodes combine by the prefix operator
  ``(G, P) o (G', P') = (G xor P G', P P')`` (hi o lo; ``xor`` is exact because ``G`` and
  ``P`` exclude each other), four at a time: a chunk of four nodes needs
  ``G = G_3 xor G_2 P_3 xor G_1 P_2 P_3 xor G_0 P_1 P_2 P_3`` and ``P = P_0 P_1 P_2 P_3``,
  products of up to four shared bits, in *one* round with multi-input Beaver
  correlations: the servers open the seven bits ``d_i = x_i xor alpha_i`` of
  ``x = (G_0, G_1, G_2, P_0, .., P_3)`` and use
  ``prod_{i in S} x_i = xor_{T subset of S} (prod_{i in S - T} d_i) alpha_T``, where the
  dealer shares ``alpha_T = prod_{i in T} alpha_i`` for the 29 subsets ``T`` that occur.
  A chunk short of four nodes is padded with the identity ``(G, P) = (0, 1)``.
* **last level (one round).** With two nodes left, ``beta = G_hi xor P_hi G_lo``: the
  servers open ``d = P_hi xor a``, ``e = G_lo xor b`` and ``g = G_hi xor gamma``; then
  ``beta = (g xor d e) xor rho_{d,e}`` with ``rho_{d,e} = gamma xor ab xor d b xor e a``, one
  of four dealer-known bits. With one node left, ``beta = g xor gamma``.

All bits are bit-sliced (one bit per element, eight elements per byte, ``numpy.packbits``
order) so the work is on whole bytes. Cost per compared element and server:

================  ======  =========================  ===================================
``l``             rounds  online bits sent           dealer bits (before compression)
================  ======  =========================  ===================================
32 (8 digits)     3       32 + 2 x 7 + 3 = 49        32 + 256 (digit tables) + 2 x 29
                                                     + 3 = 349
64 (16 digits)    4       64 + (4 + 1) x 7 + 1 = 100 64 + 512 + 5 x 29 + 1 = 722
================  ======  =========================  ===================================

The dealer sends server 0 only a seed (:meth:`medshield.secure.dealer.Dealer.deal`), so
the material on the wire is about half the table's figure (from the dealer to server 1).
Alternatives considered: FSS/DCF comparison (AriaNN, Orca) needs one round but keys of
``~l * (128 + 2)`` bits per element and an AES-based PRG per tree level, which numpy cannot
evaluate fast; a bit-wise Beaver circuit over all ``l`` bits (CrypTen) needs ``log2(l)``
rounds for the carry tree, another for the bit-to-arithmetic conversion and about ``2 l``
AND triples per element. Binary Beaver levels would need one more round for ``l = 32``;
one-time truth tables (Ishai et al., TCC 2013) for the 4-ary levels would cost 263 dealer
bits per chunk and a per-element lookup that is slower in numpy than the 15 whole-row
operations used here.

Security (semi-honest, non-colluding servers; honest dealer that never sees ``x``): a
server's view is ``m`` (uniform), its shares of ``r`` and of all tables and masks (uniform
and independent of the other server's), and the other server's halves of the opened bits
``d_i``, ``d``, ``e``, ``g``, each padded by a fresh dealer mask (``alpha``, ``a``, ``b``,
``gamma``), hence uniform. ``rho`` stays hidden: ``gamma`` masks it.

:func:`compare_reference` is the slow, per-element version of the online protocol, used to
test :func:`compare_online` bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medshield.secure.comm import Peer
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import Ring, RingArray

__all__ = [
    "GROUP_BITS",
    "CompareLayout",
    "CompareSecrets",
    "deal_compare",
    "compare_online",
    "compare_reference",
]

GROUP_BITS = 4
ARITY = 4
_INPUTS = 7  # opened bits per chunk: G0, G1, G2, P0, P1, P2, P3
_U16 = np.uint16
Material = dict[str, Any]


def _chunk_structure() -> tuple[list[int], list[int], list[int], list[int], list[tuple[int, int]]]:
    """Index tables for the 4-ary level (variables 0..6 = G0, G1, G2, P0, P1, P2, P3).

    Returns ``(subsets, coef_sets, coef_parent, coef_var, terms)``: the nonempty subsets
    ``T`` whose ``alpha_T`` the dealer shares; the subsets ``U`` whose public products
    ``prod_{i in U} d_i`` are needed (``coef_sets[0]`` is the empty set), each built as
    ``coef[parent] & d[var]``; and, for the four monomials in order (the three ``G`` terms,
    then ``P``), the ``(coef index, alpha index)`` pairs to AND and XOR together
    (``alpha index`` 0 is the empty set: the constant 1 held by server 0).
    """
    monomials = [0b1000100, 0b1100010, 0b1110001, 0b1111000]  # G2P3, G1P2P3, G0P1P2P3, P0..P3

    def subsets(s: int) -> list[int]:
        out, t = [], s
        while True:
            out.append(t)
            if t == 0:
                return out
            t = (t - 1) & s

    alphas = sorted({t for m in monomials for t in subsets(m)}, key=lambda t: (bin(t).count("1"), t))
    coefs = alphas  # the complements S - T range over the same family of sets
    pos_a = {t: i for i, t in enumerate(alphas)}  # index 0 is the empty set
    parent = [0] + [pos_a[u & (u - 1)] for u in coefs[1:]]
    var = [0] + [(u & -u).bit_length() - 1 for u in coefs[1:]]
    terms = [(pos_a[m & ~t], pos_a[t]) for m in monomials for t in subsets(m)]
    return alphas, coefs, parent, var, terms


_ALPHA_SETS, _COEF_SETS, _COEF_PARENT, _COEF_VAR, _TERMS = _chunk_structure()
_TERMS_C = [c for c, _ in _TERMS]
_TERMS_A = [a for _, a in _TERMS]


def _product_plan() -> list[tuple[list[int], list[int], list[int]]]:
    """Per subset size: positions in ``_COEF_SETS``, their parents and added variables."""
    sizes = [bin(u).count("1") for u in _COEF_SETS]
    plan = []
    for k in range(1, max(sizes) + 1):
        pos = [i for i, s in enumerate(sizes) if s == k]
        plan.append((pos, [_COEF_PARENT[i] for i in pos], [_COEF_VAR[i] for i in pos]))
    return plan


_PLAN = _product_plan()
_P_TERMS = 4 + 8 + 16  # _TERMS holds 2^|S| terms per monomial: the G ones, then P


@dataclass(frozen=True)
class CompareLayout:
    """The public shape of the comparison for an ``l``-bit ring.

    Parameters
    ----------
    ring_bits
        ``l``; the compared width is ``K = l - 1`` bits.
    """

    ring_bits: int

    def __post_init__(self) -> None:
        if self.ring_bits < 8:
            raise ValueError(f"comparison needs a ring of at least 8 bits, got {self.ring_bits}")

    @property
    def width(self) -> int:
        """``K``, the number of low bits whose borrow is computed."""
        return self.ring_bits - 1

    @property
    def groups(self) -> int:
        """Number of 4-bit digits (the last one may be shorter)."""
        return -(-self.width // GROUP_BITS)

    def levels(self) -> tuple[int, ...]:
        """Number of 4-node chunks of each 4-ary level, until at most 2 nodes remain."""
        return _levels(self.groups)

    @property
    def final_nodes(self) -> int:
        """Nodes left for the last level (1 or 2)."""
        lv = self.levels()
        return lv[-1] if lv else self.groups

    @property
    def variants(self) -> int:
        """Candidate bits ``rho_v`` the dealer prepares: 4 for two final nodes, else 1."""
        return 4 if self.final_nodes == 2 else 1

    @property
    def rounds(self) -> int:
        """Online rounds: open ``m``, one per table level, the last level."""
        return 2 + len(self.levels())

    @property
    def online_bits(self) -> int:
        """Bits each server sends per compared element."""
        last = 3 if self.final_nodes == 2 else 1
        return self.ring_bits + _INPUTS * sum(self.levels()) + last


@dataclass(frozen=True)
class CompareSecrets:
    """What the dealer keeps after dealing (to derive the gates' arithmetic material)."""

    r: RingArray  #: the mask, uniform in Z_{2^l}, shape (n,)
    rho: NDArray[np.uint8]  #: candidate bits ``rho_v``, shape (variants, n), values 0/1


@cache
def _layout(ring_bits: int) -> CompareLayout:
    return CompareLayout(ring_bits)


@cache
def _levels(groups: int) -> tuple[int, ...]:
    out, n = [], groups
    while n > 2:
        n = -(-n // ARITY)
        out.append(n)
    return tuple(out)


def _random_rows(rng: RandomSource, rows: int, nbytes: int) -> NDArray[np.uint8]:
    return np.frombuffer(rng.bytes(rows * nbytes), dtype=np.uint8).reshape(rows, nbytes).copy()


def _share_xor(val: NDArray[Any], rng: RandomSource) -> tuple[NDArray[Any], NDArray[Any]]:
    raw = np.frombuffer(rng.bytes(val.nbytes), dtype=val.dtype).reshape(val.shape)
    return raw.copy(), raw ^ val


def deal_compare(
    n: int, ring: Ring, rng: RandomSource
) -> tuple[Material, Material, CompareSecrets]:
    """The dealer's offline material for ``n`` comparisons.

    Returns
    -------
    (material for server 0, material for server 1, secrets kept by the dealer)
        Each material dict holds XOR shares of: ``r`` (ring array ``(n,)``, an *additive*
        share of the mask), ``tg``/``tp`` (``uint16 (groups, n)``, digit tables); per
        4-ary level ``L``: ``alpha{L}`` (``uint8 (chunks, 29, nbytes)``, bit-sliced
        ``alpha_T`` for the nonempty subsets ``T`` in :data:`_ALPHA_SETS` order, the first
        seven being the masks ``alpha_i`` themselves); and ``fin`` (``uint8 (3, nbytes)``:
        ``a``, ``b``, ``gamma``).
    """
    lay = CompareLayout(ring.bits)
    nb = (n + 7) // 8
    r = rng.ring(n, ring.bits)
    r0 = rng.ring(n, ring.bits)
    m0: Material = {"r": r0}
    m1: Material = {"r": ring.sub(r, r0)}
    tp = np.left_shift(_U16(1), _digits(r, lay))
    tg = tp - _U16(1)
    for key, table in (("tg", tg), ("tp", tp)):
        m0[key], m1[key] = _share_xor(table, rng)
    for lev, chunks in enumerate(lay.levels()):
        alpha = _random_rows(rng, chunks * _INPUTS, nb).reshape(chunks, _INPUTS, nb)
        prods = _products(alpha)[:, 1:]  # (chunks, 29, nb): alpha_T, T nonempty
        m0[f"alpha{lev}"], m1[f"alpha{lev}"] = _share_xor(prods, rng)
    fin = _random_rows(rng, 3, nb)  # a, b, gamma
    m0["fin"], m1["fin"] = _share_xor(fin, rng)
    a, b, gamma = (np.unpackbits(row, count=n) for row in fin)
    if lay.variants == 4:
        base = gamma ^ (a & b)
        rho = np.stack([base, base ^ a, base ^ b, base ^ a ^ b])  # index 2 d + e
    else:
        rho = gamma[None, :]
    return m0, m1, CompareSecrets(r=r, rho=rho)


def _products(rows: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """``AND_{i in U} rows[:, i]`` for every ``U`` in ``_COEF_SETS`` (the first is empty: ones).

    ``rows`` is ``(chunks, 7, nbytes)``; the result is ``(chunks, 30, nbytes)``.
    """
    out = np.empty((rows.shape[0], len(_COEF_SETS), rows.shape[2]), dtype=np.uint8)
    out[:, 0] = 0xFF
    for pos, parents, var in _PLAN:
        out[:, pos] = out[:, parents] & rows[:, var]
    return out


def _digits(m: RingArray, lay: CompareLayout) -> NDArray[np.uint16]:
    """The 4-bit digits of the ``K`` low bits, ``(groups, n)``."""
    dt = m.dtype.type
    low = m & dt((1 << lay.width) - 1)
    shifts = (np.arange(lay.groups, dtype=m.dtype) * dt(GROUP_BITS))[:, None]
    return ((low[None, :] >> shifts) & dt(15)).astype(_U16)


def _exchange_rows(peer: Peer, mine: NDArray[np.uint8], what: str) -> NDArray[np.uint8]:
    other = np.frombuffer(peer.exchange(mine.tobytes()), dtype=np.uint8)
    if other.size != mine.size:
        raise ValueError(
            f"{what}: received {other.size} bytes, expected {mine.size}; the two servers run "
            "different programs or batch sizes"
        )
    return mine ^ other.reshape(mine.shape)


def _pad_nodes(
    g: NDArray[np.uint8], p: NDArray[np.uint8], chunks: int, party: int
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Pad to ``4 * chunks`` node rows with the identity ``(G, P) = (0, 1)`` (party 0 holds it)."""
    extra = ARITY * chunks - g.shape[0]
    if not extra:
        return g, p
    zeros = np.zeros((extra, g.shape[1]), dtype=np.uint8)
    ones = np.full_like(zeros, 0xFF if party == 0 else 0)
    return np.concatenate([g, zeros]), np.concatenate([p, ones])


def compare_online(
    peer: Peer, ring: Ring, x: RingArray, mat: Material
) -> tuple[RingArray, NDArray[np.uint8], NDArray[np.intp]]:
    """Open ``m = x + 2^(l-1) + r`` and the public part of ``beta``.

    Parameters
    ----------
    peer
        This server's link (knows the party index).
    ring
        ``Z_{2^l}``.
    x
        This server's additive share of the compared values (ring array ``(n,)``).
    mat
        This server's material from :func:`deal_compare`.

    Returns
    -------
    (m, c, v)
        The opened masked value ``m`` (ring array ``(n,)``), the public bit ``c``
        (``uint8 (n,)``, 0/1) and the index ``v`` (``intp (n,)``) of the dealer's
        candidate bit, such that ``beta = [m mod 2^K < r mod 2^K] = c xor rho_v``. All
        three are known to both servers (and uniform, so they reveal nothing).
    """
    lay = _layout(ring.bits)
    p = peer.party
    n = x.shape[0]
    offset = ring.scalar(1 << lay.width if p == 0 else 0)
    m = peer.open_ring(ring.reduce(x + offset + mat["r"]), ring)
    v = _digits(m, lay)
    # packbits is ~30x faster on uint8 than on uint16 input
    g = np.packbits(((mat["tg"] >> v) & _U16(1)).astype(np.uint8), axis=1)
    pr = np.packbits(((mat["tp"] >> v) & _U16(1)).astype(np.uint8), axis=1)
    for lev, chunks in enumerate(lay.levels()):
        g, pr = _pad_nodes(g, pr, chunks, p)
        gc, pc = g.reshape(chunks, ARITY, -1), pr.reshape(chunks, ARITY, -1)
        x_in = np.concatenate([gc[:, :3], pc], axis=1)  # (chunks, 7, nbytes)
        alpha = mat[f"alpha{lev}"]  # (chunks, 29, nbytes); rows 0..6 are the masks
        d = _exchange_rows(peer, x_in ^ alpha[:, :_INPUTS], f"comparison level {lev}")
        coef = _products(d)
        shares = np.empty((chunks, alpha.shape[1] + 1, alpha.shape[2]), dtype=np.uint8)
        shares[:, 0] = 0xFF if p == 0 else 0  # the empty set: the constant 1, held by server 0
        shares[:, 1:] = alpha
        terms = coef[:, _TERMS_C] & shares[:, _TERMS_A]  # (chunks, 44, nbytes)
        # the three G monomials are XORed together anyway: two reductions
        g = gc[:, 3] ^ np.bitwise_xor.reduce(terms[:, :_P_TERMS], axis=1)
        pr = np.bitwise_xor.reduce(terms[:, _P_TERMS:], axis=1)
    fa, fb, fg = mat["fin"]
    if lay.final_nodes == 2:
        mine = np.stack([pr[1] ^ fa, g[0] ^ fb, g[1] ^ fg])
        d, e, gg = _exchange_rows(peer, mine, "comparison last level")
        c_pub = np.unpackbits(gg ^ (d & e), count=n)
        idx = 2 * np.unpackbits(d, count=n).astype(np.intp) + np.unpackbits(e, count=n)
        return m, c_pub, idx
    gg = _exchange_rows(peer, (g[0] ^ fg)[None, :], "comparison last level")[0]
    return m, np.unpackbits(gg, count=n), np.zeros(n, dtype=np.intp)


def _bit(row: NDArray[np.uint8], i: int) -> int:
    """Element ``i`` of a bit-sliced row."""
    return (int(row[i >> 3]) >> (7 - (i & 7))) & 1


def compare_reference(
    ring: Ring, x0: RingArray, x1: RingArray, mat0: Material, mat1: Material
) -> list[tuple[int, int, int]]:
    """Slow, obvious simulation of :func:`compare_online` for both servers at once.

    One element at a time, with Python ints and lists: open ``m``, read the digit-table
    bits, combine four nodes at a time (expanding each product over the subsets of its
    variables), then the last level.

    Returns
    -------
    list of ``(m, c, v)`` per element, as :func:`compare_online` returns them.
    """
    lay = CompareLayout(ring.bits)
    mats = (mat0, mat1)
    out: list[tuple[int, int, int]] = []
    for i in range(len(x0)):
        m = (int(x0[i]) + (1 << lay.width) + int(mat0["r"][i]) + int(x1[i]) + int(mat1["r"][i]))
        m %= 1 << ring.bits
        low = m % (1 << lay.width)
        gs: list[list[int]] = [[], []]
        ps: list[list[int]] = [[], []]
        for j in range(lay.groups):
            digit = (low >> (GROUP_BITS * j)) & 15
            for party in (0, 1):
                gs[party].append((int(mats[party]["tg"][j, i]) >> digit) & 1)
                ps[party].append((int(mats[party]["tp"][j, i]) >> digit) & 1)
        for lev, chunks in enumerate(lay.levels()):
            for party in (0, 1):  # identity padding (0, 1), held by server 0
                while len(gs[party]) < ARITY * chunks:
                    gs[party].append(0)
                    ps[party].append(1 if party == 0 else 0)
            new_g: list[list[int]] = [[], []]
            new_p: list[list[int]] = [[], []]
            for c in range(chunks):
                x_in = [[gs[q][ARITY * c + k] for k in range(3)] + ps[q][ARITY * c : ARITY * c + 4]
                        for q in (0, 1)]
                alpha = [[_bit(mt[f"alpha{lev}"][c, t], i) for t in range(len(_ALPHA_SETS) - 1)]
                         for mt in mats]
                d = [x_in[0][k] ^ alpha[0][k] ^ x_in[1][k] ^ alpha[1][k] for k in range(_INPUTS)]
                for party in (0, 1):
                    monos = []
                    for s_set in (0b1000100, 0b1100010, 0b1110001, 0b1111000):
                        acc, t = 0, s_set
                        while True:  # every subset T of S
                            coef = all(d[k] for k in range(_INPUTS) if (s_set & ~t) >> k & 1)
                            a_t = (1 if party == 0 else 0) if t == 0 else alpha[party][_ALPHA_SETS.index(t) - 1]
                            acc ^= int(coef) & a_t
                            if t == 0:
                                break
                            t = (t - 1) & s_set
                        monos.append(acc)
                    new_g[party].append(gs[party][ARITY * c + 3] ^ monos[0] ^ monos[1] ^ monos[2])
                    new_p[party].append(monos[3])
            gs, ps = new_g, new_p
        fin = [[_bit(mt["fin"][row], i) for row in range(3)] for mt in mats]
        if lay.final_nodes == 2:
            gg = (gs[0][1] ^ fin[0][2]) ^ (gs[1][1] ^ fin[1][2])
            d = (ps[0][1] ^ fin[0][0]) ^ (ps[1][1] ^ fin[1][0])
            e = (gs[0][0] ^ fin[0][1]) ^ (gs[1][0] ^ fin[1][1])
            out.append((m, gg ^ (d & e), 2 * d + e))
        else:
            out.append((m, (gs[0][0] ^ fin[0][2]) ^ (gs[1][0] ^ fin[1][2]), 0))
    return out
