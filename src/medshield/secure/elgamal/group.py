"""DDH groups for PE-HEALTH's ElGamal weights: prime-order subgroups of safe-prime fields.

PE-HEALTH section II-B / Protocol 1 asks for a cyclic group ``G`` of prime order ``q`` in
which DDH is hard. We use the subgroup of quadratic residues of ``Z_p^*`` for a safe prime
``p = 2q + 1`` (order ``q``, generator ``g = 4``). Two sizes are built in:

* :data:`TOY_GROUP` - ``p = 4294967087 < 2^32`` (the largest safe prime below ``2^32``,
  ``q ~ 2^31``). **Not secure** (discrete logs in a 31-bit group take seconds), but every
  product of two elements fits a ``uint64``, so exponentiations and walks are vectorised
  in numpy. Used by tests, the demo and the timing of the protocol's *structure*.
* :data:`MODP_2048` - the 2048-bit MODP group of RFC 3526 (group 14, ``p`` safe,
  ``q = (p - 1) / 2``), the stated secure size (~112-bit security). Elements are Python
  ints in ``object`` arrays; correct but about 10^4 times slower per exponentiation. Used
  to measure the per-operation cost that a secure deployment would pay.

Elements are arrays: ``uint64`` for a small group (``p < 2^32``), ``object`` otherwise.
Exponents are arrays of ``Z_q`` representatives in the same dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medshield.secure.randomness import RandomSource

__all__ = ["DDHGroup", "TOY_GROUP", "MODP_2048", "get_group"]

_MODP_2048_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF"
)
_HASH_MUL = 0x9E3779B97F4A7C15  # Fibonacci hashing constant (odd), for the walk's phi
_U64 = np.uint64
_pow3 = np.frompyfunc(pow, 3, 1)


@dataclass(frozen=True)
class DDHGroup:
    """The order-``q`` subgroup of ``Z_p^*``, ``p = 2q + 1`` a safe prime, generator ``g``.

    Parameters
    ----------
    p, q, g
        Modulus, subgroup order, generator (a quadratic residue other than 1).
    name
        A label for tables and errors.
    secure
        Whether the size is meant to resist discrete logarithms (``False`` for the toy group).
    """

    p: int
    q: int
    g: int
    name: str
    secure: bool = False

    def __post_init__(self) -> None:
        if self.p != 2 * self.q + 1:
            raise ValueError(f"{self.name}: p must be 2q + 1 (a safe prime); got p={self.p}")
        if pow(self.g, self.q, self.p) != 1 or self.g % self.p in (0, 1):
            raise ValueError(f"{self.name}: g={self.g} does not generate the order-q subgroup")

    # ---------------------------------------------------------------- representation
    @property
    def small(self) -> bool:
        """Elements and exponents fit ``uint64`` products (``p < 2^32``): numpy fast path."""
        return self.p < 2**32

    @property
    def dtype(self) -> Any:
        return _U64 if self.small else object

    @property
    def element_bytes(self) -> int:
        """Bytes of one element on the wire."""
        return (self.p.bit_length() + 7) // 8

    @property
    def exponent_bits(self) -> int:
        """Bits of ``q`` (the length ``l`` of the secret key in Protocol 1)."""
        return self.q.bit_length()

    def reduce_exponent(self, e: Any) -> NDArray[Any]:
        """Signed integers (``int64`` or Python ints) to ``Z_q`` representatives."""
        if self.small:
            return np.mod(np.asarray(e, dtype=np.int64), np.int64(self.q)).astype(_U64)
        return np.mod(np.asarray(e, dtype=object), self.q)

    # ---------------------------------------------------------------- randomness
    def random_exponents(self, shape: tuple[int, ...], rng: RandomSource) -> NDArray[Any]:
        """Uniform elements of ``Z_q`` (statistical distance ``< 2^-64`` from uniform)."""
        if self.small:
            return rng.uint64(shape) % _U64(self.q)
        nbytes = (self.q.bit_length() + 7) // 8 + 8
        n = int(np.prod(shape, dtype=np.int64))
        raw = rng.bytes(n * nbytes)
        vals = [int.from_bytes(raw[i * nbytes:(i + 1) * nbytes], "little") % self.q
                for i in range(n)]
        out = np.empty(n, dtype=object)
        out[:] = vals
        return out.reshape(shape)

    # ---------------------------------------------------------------- arithmetic
    def mul(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        """Element-wise product in ``G``."""
        return (a * b) % (_U64(self.p) if self.small else self.p)

    def power(self, base: NDArray[Any], e: NDArray[Any]) -> NDArray[Any]:
        """Element-wise ``base ** e`` (square and multiply; both broadcast)."""
        if not self.small:
            return _pow3(base, e, self.p)
        base_b, e_b = np.broadcast_arrays(np.asarray(base, _U64), np.asarray(e, _U64))
        p = _U64(self.p)
        r = np.ones(base_b.shape, dtype=_U64)
        b = base_b.copy()
        e = e_b.copy()
        for _ in range(self.q.bit_length()):
            odd = (e & _U64(1)).astype(bool)
            r[odd] = (r[odd] * b[odd]) % p
            b = (b * b) % p
            e >>= _U64(1)
        return r

    def g_pow(self, e: NDArray[Any]) -> NDArray[Any]:
        """``g ** e`` element-wise (a fixed-base table in a small group, ``pow`` otherwise)."""
        if not self.small:
            return _pow3(self.g, np.asarray(e, dtype=object), self.p)
        return self.fixed_base_power(self.fixed_base_table(np.array(self.g, dtype=self.dtype)), e)

    def fixed_base_table(self, base: NDArray[Any]) -> NDArray[Any]:
        """``base ** (2^i)`` for every bit ``i`` of ``q``: shape ``(bits, *base.shape)``.

        Precomputed once per fixed base (the encrypted weights are fixed at deployment), it
        turns an exponentiation into at most ``bits`` multiplications, no squarings.
        """
        rows = [np.asarray(base, dtype=self.dtype)]
        for _ in range(self.q.bit_length() - 1):
            rows.append(self.mul(rows[-1], rows[-1]))
        return np.stack(rows)

    def fixed_base_power(self, table: NDArray[Any], e: NDArray[Any]) -> NDArray[Any]:
        """``base ** e`` from :meth:`fixed_base_table` (``e`` broadcasts against ``base``)."""
        e = np.asarray(e, dtype=self.dtype)
        shape = np.broadcast_shapes(e.shape, table.shape[1:])
        r = np.ones(shape, dtype=self.dtype) if self.small else np.full(shape, 1, dtype=object)
        if self.small:
            p = _U64(self.p)
            for i in range(table.shape[0]):
                bit = ((e >> _U64(i)) & _U64(1)).astype(bool)
                r = np.where(bit, (r * table[i]) % p, r)
            return r
        for i in range(table.shape[0]):
            bit = np.vectorize(lambda v, i=i: (v >> i) & 1, otypes=[bool])(e)
            r = np.where(bit, (r * table[i]) % self.p, r)
        return r

    def prod(self, a: NDArray[Any], axis: int) -> NDArray[Any]:
        """Product along ``axis`` (a balanced tree of :meth:`mul`)."""
        a = np.moveaxis(np.asarray(a), axis, 0)
        while a.shape[0] > 1:
            if a.shape[0] % 2:
                a = np.concatenate([a, np.ones((1, *a.shape[1:]), dtype=a.dtype)
                                    if self.small else np.full((1, *a.shape[1:]), 1, object)])
            a = self.mul(a[0::2], a[1::2])
        return a[0]

    def distinguished(self, h: NDArray[Any], dp_bits: int) -> NDArray[np.bool_]:
        """PE-HEALTH's ``phi(h) == 0``: the top ``dp_bits`` of a multiplicative hash of the
        low 64 bits of ``h`` are zero (density ``2^-dp_bits``; public, both servers agree)."""
        if dp_bits == 0:
            return np.ones(np.shape(h), dtype=bool)
        if self.small:
            low = np.asarray(h, dtype=_U64)
        else:
            low = np.vectorize(lambda v: v & 0xFFFFFFFFFFFFFFFF, otypes=[_U64])(h)
        with np.errstate(over="ignore"):
            mixed = low * _U64(_HASH_MUL)
        return (mixed >> _U64(64 - dp_bits)) == 0

    def __repr__(self) -> str:
        kind = "secure" if self.secure else "TOY, insecure"
        return f"DDHGroup({self.name}, {self.p.bit_length()}-bit p, {kind})"


#: The largest safe prime below ``2^32`` (fast, insecure: for tests and timing structure).
TOY_GROUP = DDHGroup(p=4294967087, q=2147483543, g=4, name="toy-32", secure=False)
#: RFC 3526 group 14 (2048-bit MODP), the stated secure size.
MODP_2048 = DDHGroup(p=int(_MODP_2048_HEX, 16), q=(int(_MODP_2048_HEX, 16) - 1) // 2, g=4,
                     name="modp-2048", secure=True)

_GROUPS = {"toy-32": TOY_GROUP, "toy": TOY_GROUP, "modp-2048": MODP_2048}


def get_group(name: str | DDHGroup) -> DDHGroup:
    """A built-in group by name (``"toy-32"``, ``"modp-2048"``) or the group itself."""
    if isinstance(name, DDHGroup):
        return name
    try:
        return _GROUPS[name]
    except KeyError:
        raise ValueError(
            f"unknown DDH group {name!r}; use 'toy-32' (fast, insecure, tests) or "
            "'modp-2048' (RFC 3526, secure, slow)"
        ) from None
