"""Where the secret masks come from: the OS in secure mode, a seed only for tests.

Every share, mask and piece of dealer material in :mod:`medshield.secure` is drawn from a
:class:`RandomSource`. Two modes:

* **secure** (``RandomSource.secure()``, the default everywhere): bytes come straight from
  the operating system's CSPRNG (:func:`os.urandom`, i.e. ``getrandom(2)`` on Linux). A
  non-cryptographic generator such as numpy's PCG64 must not be used here even when seeded
  from ``secrets``: one server sees raw outputs (its own shares) and PCG64's state can be
  recovered from a few outputs, which would reveal the masks of the other server.
* **seeded** (``RandomSource.seeded(seed)``): a numpy ``PCG64`` generator, reproducible and
  fast, for tests and experiments. It is **not secure** (anyone who knows or guesses the
  seed knows every mask, i.e. every secret), so it emits a :class:`SecurityWarning` through
  :func:`warnings.warn` when created.

Threat model (PE-HEALTH, docs/threat-models.md): the sensor and the healthcare centre are
honest and draw the randomness; the two compute servers must not be able to predict it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SecurityWarning", "RandomSource"]


class SecurityWarning(UserWarning):
    """A mode that weakens the security guarantee is in use (fixed seed, trusted shortcut)."""


class RandomSource:
    """Uniform random ring elements and bits, from the OS or (for tests) a seed.

    Parameters
    ----------
    seed
        ``None`` (default): secure mode, OS entropy. An int: seeded, reproducible,
        **insecure** mode (warns with :class:`SecurityWarning`).

    Examples
    --------
    >>> import warnings
    >>> rs = RandomSource()            # secure: os.urandom
    >>> rs.is_secure
    True
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", SecurityWarning)
    ...     RandomSource(seed=0).uint64((2,)).dtype
    dtype('uint64')
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._gen: np.random.Generator | None = None
        if seed is not None:
            warnings.warn(
                f"RandomSource(seed={seed}) is NOT SECURE: every share and mask is "
                "determined by the seed, so anyone who knows it learns the inputs, weights and "
                "outputs. Use it only for tests and reproducible experiments; use "
                "RandomSource() (OS entropy) for real data.",
                SecurityWarning,
                stacklevel=2,
            )
            self._gen = np.random.Generator(np.random.PCG64(seed))

    @classmethod
    def secure(cls) -> RandomSource:
        """A source backed by :func:`os.urandom` (the default)."""
        return cls(None)

    @classmethod
    def seeded(cls, seed: int) -> RandomSource:
        """A reproducible, insecure source (warns with :class:`SecurityWarning`)."""
        return cls(seed)

    @property
    def is_secure(self) -> bool:
        """Whether the bytes come from the OS CSPRNG."""
        return self._gen is None

    # ------------------------------------------------------------------ primitives
    def bytes(self, n: int) -> bytes:
        """``n`` uniform random bytes."""
        if n < 0:
            raise ValueError(f"cannot draw a negative number of bytes ({n})")
        if self._gen is None:
            return os.urandom(n)
        return self._gen.bytes(n)

    def _array(self, shape: tuple[int, ...] | int, dtype: type[np.unsignedinteger]) -> NDArray:
        shp = (shape,) if isinstance(shape, int) else tuple(shape)
        n = int(np.prod(shp, dtype=np.int64))
        size = np.dtype(dtype).itemsize
        return np.frombuffer(self.bytes(n * size), dtype=dtype).reshape(shp).copy()

    def uint64(self, shape: tuple[int, ...] | int) -> NDArray[np.uint64]:
        """Uniform elements of ``Z_{2^64}``."""
        return self._array(shape, np.uint64)

    def ring(self, shape: tuple[int, ...] | int, bits: int) -> NDArray[Any]:
        """Uniform elements of ``Z_{2^bits}`` in the ring's dtype (``uint32`` if ``bits <= 32``)."""
        dtype = np.uint32 if bits <= 32 else np.uint64
        out = self._array(shape, dtype)
        if bits < 8 * np.dtype(dtype).itemsize:
            out &= dtype((1 << bits) - 1)
        return out

    def uint16(self, shape: tuple[int, ...] | int) -> NDArray[np.uint16]:
        """Uniform 16-bit words."""
        return self._array(shape, np.uint16)

    def bits(self, shape: tuple[int, ...] | int) -> NDArray[np.uint8]:
        """Uniform bits, one per ``uint8`` element (values 0 and 1)."""
        shp = (shape,) if isinstance(shape, int) else tuple(shape)
        n = int(np.prod(shp, dtype=np.int64))
        raw = np.frombuffer(self.bytes((n + 7) // 8), dtype=np.uint8)
        return np.unpackbits(raw, count=n).reshape(shp)

    def __repr__(self) -> str:
        mode = "secure (os.urandom)" if self.is_secure else f"SEEDED seed={self.seed} (insecure)"
        return f"RandomSource({mode})"
