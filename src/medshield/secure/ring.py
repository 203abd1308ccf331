"""The ring Z_{2^l} and the fixed-point encoding of real numbers into it.

Every secret-shared value of :mod:`medshield.secure` lives in the ring ``Z_{2^l}``
(``l = Ring.bits``, 64 by default, any value from 8 to 64 allowed). Elements are stored in
unsigned numpy arrays of the ring's :attr:`Ring.dtype`: ``uint64`` for ``l > 32`` (so
``Z_{2^64}`` is exactly numpy's ``uint64`` arithmetic) and ``uint32`` for ``l <= 32`` (half
the memory traffic: the 32-bit configuration is 2-4x faster element-wise). numpy's unsigned
array arithmetic wraps modulo ``2^64`` / ``2^32`` **silently and by design** (numpy never
warns for array overflow). Because ``Z_{2^w} -> Z_{2^l}`` is a ring homomorphism, sums and
products may be computed modulo the dtype width ``w`` and reduced to ``l`` bits only when a
value is sent, compared or decoded (:meth:`Ring.reduce`). Mix only arrays and scalars of the
ring's dtype (:meth:`Ring.scalar`): a ``uint64`` scalar would silently promote a ``uint32``
array, and numpy *scalar* arithmetic warns on overflow.

Fixed point (PE-HEALTH section II-B, "Data Format")
---------------------------------------------------
PE-HEALTH encodes a real ``x0`` as ``floor(x0 * 10^d) mod q`` with a public precision degree
``d``; we use the binary analogue ``round(x0 * 2^f) mod 2^l`` with ``f = frac_bits``
(``d = 4`` decimal digits is about ``f = 13.3``). A product of two encodings carries
``2f`` fractional bits and is truncated back by ``f`` bits by the protocol. Decoding lifts
``[0, 2^l)`` to the signed range ``[-2^(l-1), 2^(l-1))`` and divides by ``2^f``.

Overflow
--------
:meth:`Ring.encode` raises :class:`FixedPointOverflow` when ``|round(x0 * 2^f)|`` does not fit
the signed range (``on_overflow="wrap"`` reduces modulo ``2^l`` instead, which is what the
ring does to any intermediate value that outgrows it: it silently wraps to a wrong number).
The protocol is exact for every value inside the signed range and wrong outside it; check a
model with :func:`medshield.secure.reference.range_report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Ring", "RingMatrix", "FixedPointOverflow", "RingArray", "U64", "ring_matmul"]

RingArray = NDArray[Any]
"""An array of ring elements (``uint32`` or ``uint64``, see :attr:`Ring.dtype`)."""
U64 = RingArray  # historical name, kept for readability of signatures

_LIMB = 16
_FLOAT_EXACT = 2**53


class FixedPointOverflow(OverflowError, ValueError):
    """A real number does not fit the signed range of the ring at the chosen precision."""


@dataclass(frozen=True)
class Ring:
    """The ring ``Z_{2^bits}`` with fixed-point helpers.

    Parameters
    ----------
    bits
        ``l``, the ring size in bits, from 8 to 64.

    Examples
    --------
    >>> r = Ring(32)
    >>> a = r.encode([1.5, -2.25], frac_bits=12)
    >>> a.dtype
    dtype('uint32')
    >>> r.decode(r.add(a, a), frac_bits=12).tolist()
    [3.0, -4.5]
    """

    bits: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 8 <= self.bits <= 64:
            raise ValueError(f"ring bits must be an int from 8 to 64, got {self.bits!r}")

    # ------------------------------------------------------------------ constants
    @cached_property
    def dtype(self) -> np.dtype[Any]:
        """Storage dtype: ``uint32`` for ``bits <= 32``, else ``uint64``."""
        return np.dtype(np.uint32) if self.bits <= 32 else np.dtype(np.uint64)

    @cached_property
    def width(self) -> int:
        """Bits of the storage dtype (32 or 64): arithmetic wraps modulo ``2^width``."""
        return 8 * self.dtype.itemsize

    def scalar(self, value: int) -> Any:
        """``value mod 2^width`` as a numpy scalar of the ring's dtype."""
        return self.dtype.type(value % (1 << self.width))

    @cached_property
    def mask(self) -> int:
        """``2^bits - 1`` (a Python int)."""
        return (1 << self.bits) - 1

    @property
    def nbytes(self) -> int:
        """Bytes per element on the wire: ``ceil(bits / 8)``."""
        return (self.bits + 7) // 8

    def reduce(self, a: ArrayLike) -> RingArray:
        """``a mod 2^bits`` as an array of the ring's dtype (a copy only when needed).

        Integer input of any width is taken modulo ``2^bits`` (two's complement if signed).
        """
        arr = np.asarray(a)
        if arr.dtype != self.dtype:
            if arr.dtype.kind == "i":
                arr = arr.astype(np.int64).view(np.uint64)
            elif arr.dtype.kind not in "ub":
                raise TypeError(f"ring elements must be integers, got dtype {arr.dtype}")
            arr = arr.astype(self.dtype)  # modular truncation from wider dtypes
        if self.bits == self.width:
            return arr
        return np.bitwise_and(arr, self.scalar(self.mask))

    # ------------------------------------------------------------------ arithmetic
    def add(self, a: ArrayLike, b: ArrayLike) -> RingArray:
        """``a + b mod 2^bits``."""
        return self.reduce(np.add(self.reduce(a), self.reduce(b)))

    def sub(self, a: ArrayLike, b: ArrayLike) -> RingArray:
        """``a - b mod 2^bits``."""
        return self.reduce(np.subtract(self.reduce(a), self.reduce(b)))

    def neg(self, a: ArrayLike) -> RingArray:
        """``-a mod 2^bits``."""
        return self.reduce(np.negative(self.reduce(a)))

    def mul(self, a: ArrayLike, b: ArrayLike) -> RingArray:
        """Element-wise ``a * b mod 2^bits``."""
        return self.reduce(np.multiply(self.reduce(a), self.reduce(b)))

    def matmul(self, a: ArrayLike, b: ArrayLike) -> RingArray:
        """``a @ b mod 2^bits`` (see :func:`ring_matmul`)."""
        return ring_matmul(a, b, self.bits)

    # ------------------------------------------------------------------ signed view
    def to_signed(self, a: ArrayLike) -> NDArray[np.int64]:
        """Lift ``[0, 2^bits)`` to ``[-2^(bits-1), 2^(bits-1))`` as ``int64``."""
        u = self.reduce(a)
        if self.bits == 64:
            return u.view(np.int64)
        if self.bits == 32:
            return u.view(np.int32).astype(np.int64)
        s = u.astype(np.int64)
        return np.where(s >= (1 << (self.bits - 1)), s - (1 << self.bits), s)

    def from_signed(self, a: ArrayLike) -> RingArray:
        """Signed integers to ring elements (two's complement modulo ``2^bits``)."""
        return self.reduce(np.asarray(a, dtype=np.int64).view(np.uint64))

    # ------------------------------------------------------------------ fixed point
    def encode(
        self,
        x: ArrayLike,
        frac_bits: int,
        *,
        on_overflow: Literal["raise", "wrap"] = "raise",
    ) -> RingArray:
        """Encode reals as ``round(x * 2^frac_bits) mod 2^bits``.

        Parameters
        ----------
        x
            Real numbers, any shape (float or int array, or anything ``np.asarray`` takes).
        frac_bits
            ``f``, the number of fractional bits (the precision, ``2^-f``).
        on_overflow
            ``"raise"`` (default): raise :class:`FixedPointOverflow` if some value falls
            outside ``[-2^(bits-1), 2^(bits-1))`` after scaling, or is not finite.
            ``"wrap"``: reduce it modulo ``2^bits`` like any ring overflow (still raises for
            NaN and infinities, and for magnitudes beyond ``2^63``).

        Returns
        -------
        ndarray of the ring's dtype, same shape as ``x``.
        """
        self._check_frac(frac_bits)
        if on_overflow not in ("raise", "wrap"):
            raise ValueError(f"on_overflow must be 'raise' or 'wrap', got {on_overflow!r}")
        xf = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(xf)):
            raise FixedPointOverflow(
                "cannot encode NaN or infinite values; clean the input (np.nan_to_num) first"
            )
        scaled = np.rint(xf * float(2**frac_bits))
        limit = float(2 ** (self.bits - 1)) if on_overflow == "raise" else float(2**63)
        if scaled.size and (scaled.max() >= limit or scaled.min() < -limit):
            big = float(np.abs(xf).max())
            raise FixedPointOverflow(
                f"value {big:.4g} does not fit a {self.bits}-bit ring with {frac_bits} "
                f"fractional bits (largest magnitude {2.0 ** (self.bits - 1 - frac_bits):.4g}); "
                "use fewer frac_bits, a larger ring, or rescale the data"
            )
        return self.from_signed(scaled.astype(np.int64))

    def decode(self, a: ArrayLike, frac_bits: int) -> NDArray[np.float64]:
        """Inverse of :meth:`encode`: signed lift, then divide by ``2^frac_bits``."""
        self._check_frac(frac_bits)
        return self.to_signed(a).astype(np.float64) / float(2**frac_bits)

    def max_value(self, frac_bits: int) -> float:
        """The largest magnitude :meth:`encode` accepts at ``frac_bits``."""
        return 2.0 ** (self.bits - 1 - frac_bits)

    def _check_frac(self, frac_bits: int) -> None:
        if not isinstance(frac_bits, int | np.integer) or not 0 <= frac_bits < self.bits - 1:
            raise ValueError(
                f"frac_bits must be an int from 0 to {self.bits - 2} for a {self.bits}-bit "
                f"ring, got {frac_bits!r}"
            )

    # ------------------------------------------------------------------ wire format
    def pack(self, a: ArrayLike) -> bytes:
        """The low ``bits`` of each element, ``nbytes`` little-endian bytes each."""
        u = np.ascontiguousarray(self.reduce(a)).reshape(-1)
        nb, item = self.nbytes, self.dtype.itemsize
        little = u.astype(f"<u{item}", copy=False)
        if nb == item:
            return little.tobytes()
        if nb == 2:
            return u.astype("<u2").tobytes()
        return np.ascontiguousarray(little.view(np.uint8).reshape(-1, item)[:, :nb]).tobytes()

    def unpack(self, buf: bytes | bytearray | memoryview, shape: tuple[int, ...]) -> RingArray:
        """Inverse of :meth:`pack` for an array of ``shape``.

        Raises
        ------
        ValueError
            If the buffer length does not match ``shape`` (a protocol desynchronisation).
        """
        n = math.prod(shape)
        nb, item = self.nbytes, self.dtype.itemsize
        if len(buf) != n * nb:
            raise ValueError(
                f"received {len(buf)} bytes, expected {n * nb} for {n} elements of "
                f"{self.bits} bits: the two parties run different programs or batch sizes"
            )
        if nb in (item, 2):
            out = np.frombuffer(buf, dtype=f"<u{nb}").astype(self.dtype)
        else:
            raw = np.zeros((n, item), dtype=np.uint8)
            raw[:, :nb] = np.frombuffer(buf, dtype=np.uint8).reshape(n, nb)
            out = raw.view(f"<u{item}").reshape(n).astype(self.dtype)
        return self.reduce(out.reshape(shape))


class RingMatrix:
    """A fixed right operand ``b`` of shape ``(n, m)`` for repeated ``a @ b mod 2^bits``.

    Two exact methods, chosen by shape:

    * numpy's integer matmul in the ring's dtype (it wraps modulo ``2^32`` / ``2^64`` by
      itself), with ``b`` stored transposed so its inner loop is contiguous; best for few
      rows or few output columns (a convolution with 5 maps);
    * 16-bit limbs and float64 BLAS: ``a = sum_i a_i 2^(16 i)``, ``b`` likewise, and
      ``a @ b mod 2^bits = sum_s 2^(16 s) sum_{i+j=s} a_i @ b_j``; every partial sum of
      products of 16-bit limbs stays below ``2^53`` (checked), so it is exact. With 2
      limbs (``bits <= 32``) this is 3 BLAS products; it is several times faster for the
      845x100 layer at batch 64. Run BLAS single-threaded when two servers share a machine
      (``threadpoolctl``; :func:`medshield.secure.engine.run_in_process` does).

    The limbs of ``b`` (a layer's weight share) are computed once.

    Parameters
    ----------
    b
        Ring elements ``(n, m)``.
    bits
        The ring size ``l``; results are reduced modulo ``2^l``.
    """

    def __init__(self, b: ArrayLike, bits: int = 64) -> None:
        self.ring = Ring(bits)
        bb = self.ring.reduce(b)
        if bb.ndim != 2:
            raise ValueError(f"the right operand must be a matrix, got shape {bb.shape}")
        self.bits = bits
        self.shape: tuple[int, int] = (bb.shape[0], bb.shape[1])
        self._bt = np.ascontiguousarray(bb.T)
        self.limbs = (bits + _LIMB - 1) // _LIMB
        self._float_ok = self.limbs * bb.shape[0] * (2**_LIMB - 1) ** 2 < _FLOAT_EXACT
        self._blimbs: list[NDArray[np.float64]] | None = None

    @property
    def b(self) -> RingArray:
        """The matrix ``(n, m)`` (a view)."""
        return self._bt.T

    def _b_limbs(self) -> list[NDArray[np.float64]]:
        if self._blimbs is None:
            self._blimbs = _limbs(self._bt.T, self.limbs)
        return self._blimbs

    def use_float(self, rows: int) -> bool:
        """Whether a product with ``rows`` rows takes the BLAS path.

        Measured on the CryptoNets layers: with 2 limbs (``bits <= 32``) BLAS wins from about
        8 rows and 16 output columns; with 4 limbs (10 BLAS products) only for large outputs.
        """
        if not self._float_ok or rows < 8 or self.shape[1] < 16:
            return False
        return self.limbs <= 2 or rows * self.shape[1] >= 1 << 16

    def matmul(self, a: ArrayLike) -> RingArray:
        """``a @ b mod 2^bits`` for ``a`` of shape ``(..., n)``."""
        a = self.ring.reduce(a)
        if a.shape[-1] != self.shape[0]:
            raise ValueError(f"cannot multiply {a.shape} by {self.shape}")
        rows = a.size // max(a.shape[-1], 1)
        if not self.use_float(rows):
            return self.ring.reduce(np.matmul(a, self._bt.T))
        al = _limbs(a, self.limbs)
        bl = self._b_limbs()
        out = np.zeros(a.shape[:-1] + self.shape[1:], dtype=np.uint64)
        for s in range(self.limbs):
            acc = al[0] @ bl[s]
            for i in range(1, s + 1):
                acc += al[i] @ bl[s - i]
            out += acc.astype(np.uint64) << np.uint64(_LIMB * s)
        return self.ring.reduce(out)


def _limbs(x: RingArray, count: int) -> list[NDArray[np.float64]]:
    """The 16-bit limbs of ``x`` (low first) as float64 arrays."""
    dt = x.dtype.type
    return [((x >> dt(_LIMB * i)) & dt(2**_LIMB - 1)).astype(np.float64) for i in range(count)]


def ring_matmul(a: ArrayLike, b: ArrayLike, bits: int = 64) -> RingArray:
    """``a @ b`` modulo ``2^bits`` for ring arrays ``(..., n) @ (n, m)``.

    See :class:`RingMatrix` for the method (exact; float64 limbs for large products).
    """
    return RingMatrix(b, bits).matmul(a)
