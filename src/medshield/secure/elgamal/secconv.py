"""SecConv / SecFC (PE-HEALTH Protocol 2): a dot product with ElGamal-encrypted weights,
computed by each server alone.

Inputs of server ``p``: its additive shares (``Z_q``) of the layer input ``x`` and of
``sk * x``, and the public ciphertexts ``[w] = (alpha, beta) = (g^r, g^w pk^r)`` of the
weights. For one output (weights ``w_k``, inputs ``x_k``, ``k = 1..K``) server 0 computes
(Eq. 3, multiplied over ``k``)::

    h_0 = prod_k alpha_k^{-sx'_k} beta_k^{x'_k}
        = g^{c'},   c' = sum_k (w_k x'_k + r_k (sk x'_k - sx'_k))

and server 1 the *inverse* of its factor, ``h_1 = prod_k alpha_k^{sx''_k}
beta_k^{-x''_k} = g^{-c''}``. Since ``x' + x'' = x`` and ``sx' + sx'' = sk x``,
``c' + c'' = sum_k w_k x_k = V``, i.e. ``h_0 = h_1 g^V``: multiplicative shares of
``g^V``. The distinguished-point walk (:mod:`.walk`) turns them into integer additive
shares ``-mu_0`` and ``mu_1`` of ``V``. The paper walks once per product
``w_{ij} x_{ij}``; we walk once per output (the product of the factors of all ``k`` first),
which is the same conversion of the sum, ``K`` times fewer walks and a smaller error than
``K`` separate walks whose errors add up.

Cost per output and server: ``2K`` exponentiations with ``|q|``-bit exponents (fixed
bases: the weights' ciphertexts, tabulated once per deployment) and one walk of about
``2^dp_bits`` steps. No communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medshield.secure.elgamal.cipher import Ciphertext
from medshield.secure.elgamal.group import DDHGroup
from medshield.secure.elgamal.walk import walk

__all__ = ["EncryptedWeights", "secconv_party", "secconv_reference"]

_CHUNK_ELEMENTS = 1 << 19


@dataclass
class EncryptedWeights:
    """One layer's weight ciphertexts ``(K, O)`` as a server holds them.

    ``tables`` are the fixed-base tables of ``alpha`` and ``beta`` (small group only),
    built by :meth:`prepare` at deployment.
    """

    ct: Ciphertext
    tables: tuple[NDArray[Any], NDArray[Any]] | None = None

    def prepare(self, group: DDHGroup) -> EncryptedWeights:
        """Precompute ``alpha^(2^i)``, ``beta^(2^i)`` (once per deployment, small group)."""
        if group.small and self.tables is None:
            self.tables = (group.fixed_base_table(self.ct.alpha),
                           group.fixed_base_table(self.ct.beta))
        return self


def _exponents(group: DDHGroup, party: int, x: NDArray[Any], sx: NDArray[Any]
               ) -> tuple[NDArray[Any], NDArray[Any]]:
    """``(e_alpha, e_beta)``: server 0 ``(-sx', x')``, server 1 ``(sx'', -x'')``, in ``Z_q``."""
    if group.small:
        q = np.uint64(group.q)
        neg = lambda a: (q - a % q) % q  # noqa: E731
        x, sx = x % q, sx % q
    else:
        neg = lambda a: (-a) % group.q  # noqa: E731
    return (neg(sx), x) if party == 0 else (sx, neg(x))


def factor_product(group: DDHGroup, party: int, x: NDArray[Any], sx: NDArray[Any],
                   weights: EncryptedWeights) -> NDArray[Any]:
    """``h_p`` for every row of ``x`` (``(N, K)`` shares) and output: ``(N, O)`` elements."""
    e_a, e_b = _exponents(group, party, x, sx)
    n, k = x.shape
    out_dim = weights.ct.alpha.shape[1]
    if not group.small:
        fa = group.power(weights.ct.alpha[None], e_a[:, :, None])
        fb = group.power(weights.ct.beta[None], e_b[:, :, None])
        return group.prod(group.mul(fa, fb), axis=1)
    weights.prepare(group)
    assert weights.tables is not None
    ta, tb = weights.tables
    rows = max(1, _CHUNK_ELEMENTS // max(1, k * out_dim))
    out = np.empty((n, out_dim), dtype=np.uint64)
    for s in range(0, n, rows):
        fa = group.fixed_base_power(ta[:, None], e_a[s:s + rows, :, None])
        fb = group.fixed_base_power(tb[:, None], e_b[s:s + rows, :, None])
        out[s:s + rows] = group.prod(group.mul(fa, fb), axis=1)
    return out


def secconv_party(
    group: DDHGroup,
    party: int,
    x: NDArray[Any],
    sx: NDArray[Any],
    weights: EncryptedWeights,
    *,
    dp_bits: int,
    max_steps: int,
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """One server's integer share of ``x W`` (rows of ``x`` times the encrypted ``W``).

    Parameters
    ----------
    group
        The DDH group.
    party
        0 or 1.
    x, sx
        This server's ``Z_q`` shares of the inputs and of ``sk`` times the inputs, ``(N, K)``.
    weights
        The ``(K, O)`` ciphertexts.
    dp_bits, max_steps
        Walk parameters (:func:`.walk.walk`).

    Returns
    -------
    ``(share, ok)``: ``(N, O)`` integers (server 0: ``-mu_0``, server 1: ``mu_1``; they sum
    to ``x W`` unless a conversion failed) and whether this server's walks all ended.
    """
    h = factor_product(group, party, x, sx, weights)
    mu, ok = walk(group, h, dp_bits=dp_bits, max_steps=max_steps)
    return (-mu if party == 0 else mu), ok


def secconv_reference(
    group: DDHGroup,
    party: int,
    x: NDArray[Any],
    sx: NDArray[Any],
    ct: Ciphertext,
    *,
    dp_bits: int,
    max_steps: int,
) -> NDArray[np.int64]:
    """Eq. 3 and lines 3-9 of Protocol 2 with Python integers, one output at a time."""
    p, q = group.p, group.q
    n, k = x.shape
    out = np.zeros((n, ct.alpha.shape[1]), dtype=np.int64)
    for i in range(n):
        for o in range(ct.alpha.shape[1]):
            h = 1
            for j in range(k):
                xs, sxs = int(x[i, j]) % q, int(sx[i, j]) % q
                a, b = int(ct.alpha[j, o]), int(ct.beta[j, o])
                if party == 0:
                    h = h * pow(a, (-sxs) % q, p) * pow(b, xs, p) % p
                else:
                    h = h * pow(a, sxs, p) * pow(b, (-xs) % q, p) % p
            mu = 0
            while not bool(group.distinguished(np.array([h * pow(group.g, mu, p) % p],
                                                        dtype=group.dtype), dp_bits)[0]):
                if mu >= max_steps:
                    break
                mu += 1
            out[i, o] = -mu if party == 0 else mu
    return out
