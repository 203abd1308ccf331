"""ElGamal "in the exponent" over a DDH group: PE-HEALTH section II-B and Protocol 1.

``Enc(pk, w) = (alpha, beta) = (g^r, g^w pk^r)`` with ``r`` uniform in ``Z_q`` and
``pk = g^sk``. The servers never decrypt: SecConv (Protocol 2) combines a ciphertext with
additive shares of ``x`` and ``sk * x`` so that the two servers' results multiply to
``g^(w x)`` (:mod:`.secconv`). :func:`decrypt_small` exists for tests only (it recovers
``w`` from ``g^w`` by a bounded search).

Weights are fixed-point integers (``round(w * 2^f)``, signed), mapped to ``Z_q`` as
``w mod q``. Security: IND-CPA under DDH in :data:`~.group.MODP_2048`; the toy group gives
none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medshield.secure.elgamal.group import DDHGroup
from medshield.secure.randomness import RandomSource

__all__ = ["KeyPair", "Ciphertext", "keygen", "encrypt", "decrypt_small"]


@dataclass(frozen=True)
class KeyPair:
    """``sk`` uniform in ``Z_q`` (kept by the healthcare centre), ``pk = g^sk`` (public)."""

    group: DDHGroup
    sk: int
    pk: int


@dataclass(frozen=True)
class Ciphertext:
    """Element-wise ElGamal ciphertexts ``(alpha, beta)`` of an integer array (same shape)."""

    alpha: NDArray[Any]
    beta: NDArray[Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.alpha.shape)

    def nbytes(self, group: DDHGroup) -> int:
        """Bytes on the wire: two group elements per entry."""
        return 2 * int(self.alpha.size) * group.element_bytes


def keygen(group: DDHGroup, rng: RandomSource) -> KeyPair:
    """Protocol 1, key setup: ``sk`` uniform in ``Z_q \\ {0}``, ``pk = g^sk``."""
    sk = 0
    while sk == 0:
        sk = int(group.random_exponents((1,), rng)[0])
    return KeyPair(group, sk, pow(group.g, sk, group.p))


def encrypt(key: KeyPair, w: ArrayLike, rng: RandomSource) -> Ciphertext:
    """``Enc(pk, w)`` of every entry of the signed integer array ``w``.

    Parameters
    ----------
    key
        The key pair (only ``pk`` is used).
    w
        Signed integers, any shape (fixed-point weights).
    rng
        Source of the encryption randomness ``r`` (one fresh ``r`` per entry).
    """
    grp = key.group
    wq = grp.reduce_exponent(np.asarray(w))
    r = grp.random_exponents(wq.shape, rng)
    alpha = grp.g_pow(r)
    if grp.small:
        pk_r = grp.fixed_base_power(grp.fixed_base_table(np.array(key.pk, dtype=grp.dtype)), r)
    else:
        pk_r = grp.power(np.array(key.pk, dtype=object), r)
    beta = grp.mul(grp.g_pow(wq), pk_r)
    return Ciphertext(alpha, beta)


def decrypt_small(key: KeyPair, ct: Ciphertext, bound: int) -> NDArray[np.int64]:
    """Recover ``w`` with ``|w| <= bound`` (tests only: a table of ``g^v``, ``|v| <= bound``)."""
    grp = key.group
    gw = grp.mul(ct.beta, grp.power(ct.alpha, np.asarray(grp.q - key.sk, dtype=grp.dtype)))
    table = {pow(grp.g, v % grp.q, grp.p): v for v in range(-bound, bound + 1)}
    flat = [table.get(int(h)) for h in np.asarray(gw).reshape(-1)]
    if any(v is None for v in flat):
        raise ValueError(f"a plaintext is outside [-{bound}, {bound}]; raise bound")
    return np.array(flat, dtype=np.int64).reshape(ct.shape)
