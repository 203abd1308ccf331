"""Multiplicative-to-additive conversion by distinguished-point walks (PE-HEALTH Protocol 2,
lines 3-9; Boyle, Gilboa and Ishai, CRYPTO 2016, "share conversion").

After SecConv's exponentiations the servers hold ``h_0`` and ``h_1`` with
``h_0 = h_1 * g^V`` (server 0: ``g^{c'}``; server 1: ``g^{-c''}``, ``V = c' + c''``). Each
walks ``h, h g, h g^2, ...`` until it meets a *distinguished point* (``phi(h g^mu) == 0``,
density ``delta = 2^-dp_bits``) or gives up after ``Theta`` steps. Both walks run along the
same orbit, shifted by ``V`` steps, so unless a distinguished point lies between the two
starting points they stop at the same point and ``mu_1 - mu_0 = V`` exactly, over the
integers: additive shares of ``V`` obtained with **no communication**.

Error (per conversion, ``V`` the integer value, walks independent of the servers' data
beyond their own start points):

* a distinguished point among the ``|V|`` points between the two starts:
  ``P ~ 1 - (1 - delta)^|V| ~ |V| delta``; the result is then off by a whole gap
  (about ``1/delta``), i.e. wrong, not slightly noisy;
* a walk longer than ``Theta``: ``P ~ (1 - delta)^Theta ~ exp(-Theta delta)``.

So a conversion of a fixed-point dot product at ``f`` fractional bits (``|V| ~ |y| 2^{2f}``)
costs about ``1/delta`` group multiplications and hashes per server and fails with
probability about ``|y| 2^{2f} delta``: halving the error doubles the work, and every extra
bit of precision (``d``) doubles the error. :func:`conversion_error` gives the model,
:func:`walk` the vectorised walk, :func:`walk_reference` the obvious loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medshield.secure.elgamal.group import DDHGroup

__all__ = ["walk", "walk_reference", "conversion_error", "expected_steps"]


def walk(
    group: DDHGroup,
    h: NDArray[Any],
    *,
    dp_bits: int,
    max_steps: int,
    chunk: int = 256,
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Steps from each ``h`` to the first distinguished point of ``h, h g, h g^2, ...``.

    Parameters
    ----------
    group
        The group.
    h
        Start points, any shape.
    dp_bits
        ``-log2`` of the density of distinguished points.
    max_steps
        ``Theta``: give up after this many steps.
    chunk
        Steps evaluated at once per start point (numpy batch size; a small group only).

    Returns
    -------
    ``(mu, ok)``: steps (``int64``, same shape as ``h``; ``max_steps`` where the walk gave
    up) and whether a distinguished point was found.
    """
    shape = np.shape(h)
    flat = np.asarray(h).reshape(-1)
    mu = np.full(flat.shape, max_steps, dtype=np.int64)
    ok = np.zeros(flat.shape, dtype=bool)
    if not group.small:
        for i, start in enumerate(flat):
            m, found = _walk_one(group, int(start), dp_bits, max_steps)
            mu[i], ok[i] = m, found
        return mu.reshape(shape), ok.reshape(shape)
    p = np.uint64(group.p)
    steps = np.arange(chunk, dtype=np.int64)
    gpow = np.ones(chunk, dtype=np.uint64)
    for j in range(1, chunk):
        gpow[j] = (gpow[j - 1] * np.uint64(group.g)) % p
    g_chunk = (gpow[-1] * np.uint64(group.g)) % p
    active = np.arange(flat.size)
    cur = flat.astype(np.uint64)
    base = 0
    while active.size and base < max_steps:
        cand = (cur[:, None] * gpow[None, :]) % p
        hit = group.distinguished(cand, dp_bits)
        found = hit.any(axis=1)
        first = np.argmax(hit, axis=1)
        reached = base + steps[first]
        good = found & (reached <= max_steps)
        mu[active[good]] = reached[good]
        ok[active[good]] = True
        keep = ~found
        active, cur = active[keep], (cur[keep] * g_chunk) % p
        base += chunk
    return mu.reshape(shape), ok.reshape(shape)


def _walk_one(group: DDHGroup, h: int, dp_bits: int, max_steps: int) -> tuple[int, bool]:
    cur = h
    for m in range(max_steps + 1):
        if bool(group.distinguished(np.array([cur], dtype=group.dtype), dp_bits)[0]):
            return m, True
        cur = cur * group.g % group.p
    return max_steps, False


def walk_reference(
    group: DDHGroup, h: ArrayLike, *, dp_bits: int, max_steps: int
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Protocol 2 lines 3-6, literally: ``mu = 0; while phi(h g^mu) != 0 and mu < Theta:
    mu += 1``, one start point at a time, with Python integers."""
    flat = np.asarray(h, dtype=object).reshape(-1)
    out = [_walk_one(group, int(v), dp_bits, max_steps) for v in flat]
    mu = np.array([m for m, _ in out], dtype=np.int64).reshape(np.shape(h))
    ok = np.array([f for _, f in out], dtype=bool).reshape(np.shape(h))
    return mu, ok


def conversion_error(value: ArrayLike, *, dp_bits: int, max_steps: int) -> NDArray[np.float64]:
    """Model probability that a conversion of integer ``value`` fails (module docstring)."""
    v = np.abs(np.asarray(value, dtype=np.float64))
    delta = 2.0 ** -dp_bits
    between = -np.expm1(v * math.log1p(-delta)) if delta < 1 else (v > 0).astype(float)
    give_up = math.exp(max_steps * math.log1p(-delta)) if delta < 1 else 0.0
    return np.minimum(1.0, between + 2 * give_up)


def expected_steps(dp_bits: int) -> float:
    """Mean walk length ``1 / delta`` (group multiplications and hashes per conversion)."""
    return 2.0**dp_bits
