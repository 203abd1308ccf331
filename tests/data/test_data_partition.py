"""Federated partitions: disjoint, covering, deterministic, and really skewed for small alpha."""

from __future__ import annotations

import numpy as np
import pytest

from medshield.data import (
    dirichlet_partition,
    hierarchical_partition,
    iid_partition,
    label_counts,
    partition,
    shard_partition,
)

LABELS = np.repeat(np.arange(10), 100)  # 1,000 samples, 10 balanced classes


def _assert_partition(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    assert len(joined) == n and len(np.unique(joined)) == n  # disjoint and covering
    assert set(joined.tolist()) == set(range(n))
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def _dominance(parts: list[np.ndarray]) -> float:
    """Mean share of a client's most common class (0.1 = perfectly IID over 10 classes)."""
    counts = label_counts(LABELS, parts, 10)
    return float(np.mean(counts.max(1) / counts.sum(1)))


def test_iid() -> None:
    parts = iid_partition(LABELS, 7, seed=0)
    _assert_partition(parts, 1000)
    assert {len(p) for p in parts} <= {142, 143}
    assert _same(parts, iid_partition(LABELS, 7, seed=0))
    assert not _same(parts, iid_partition(LABELS, 7, seed=1))
    assert _dominance(parts) < 0.3


def test_dirichlet_small_alpha_skews_large_alpha_does_not() -> None:
    skewed = dirichlet_partition(LABELS, 10, alpha=0.1, seed=0)
    flat = dirichlet_partition(LABELS, 10, alpha=100.0, seed=0)
    for parts in (skewed, flat):
        _assert_partition(parts, 1000)
        assert min(len(p) for p in parts) >= 1
    assert _dominance(skewed) > 0.5
    assert _dominance(flat) < 0.25
    assert _same(skewed, dirichlet_partition(LABELS, 10, alpha=0.1, seed=0))
    assert not _same(skewed, dirichlet_partition(LABELS, 10, alpha=0.1, seed=1))


def test_dirichlet_min_size_even_when_redraws_fail() -> None:
    y = np.repeat(np.arange(3), [30, 5, 5])
    parts = dirichlet_partition(y, 8, alpha=0.01, seed=0, min_size=4, max_tries=1)
    _assert_partition(parts, 40)
    assert min(len(p) for p in parts) >= 4
    with pytest.raises(ValueError, match="cannot give 8 clients at least 6"):
        dirichlet_partition(y, 8, alpha=1.0, min_size=6)
    with pytest.raises(ValueError, match="alpha must be positive"):
        dirichlet_partition(y, 2, alpha=0.0)


def test_shards() -> None:
    parts = shard_partition(LABELS, 10, shards_per_client=2, seed=0)
    _assert_partition(parts, 1000)
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)  # 50-sample shards align with classes
    assert _same(parts, shard_partition(LABELS, 10, 2, seed=0))


def test_hierarchical_hospitals_then_devices() -> None:
    tree = hierarchical_partition(LABELS, 4, [2, 3, 1, 5], seed=0, hospital_alpha=0.1)
    assert [len(h) for h in tree] == [2, 3, 1, 5]
    _assert_partition([d for h in tree for d in h], 1000)
    assert all(len(d) >= 1 for h in tree for d in h)
    hospitals = [np.concatenate(h) for h in tree]
    # hospitals differ in case mix: far from the IID level (~0.12 for 4 clients of 250)
    assert _dominance(hospitals) > 0.25
    assert all(
        _same(a, b)
        for a, b in zip(
            tree,
            hierarchical_partition(LABELS, 4, [2, 3, 1, 5], seed=0, hospital_alpha=0.1),
            strict=True,
        )
    )
    iid_tree = hierarchical_partition(
        LABELS, 2, 3, seed=1, hospital_scheme="iid", device_scheme="dirichlet", device_alpha=0.05
    )
    _assert_partition([d for h in iid_tree for d in h], 1000)
    with pytest.raises(ValueError, match="3 entries for 2 hospitals"):
        hierarchical_partition(LABELS, 2, [1, 1, 1])


def test_label_counts_and_dispatch() -> None:
    y = np.array([0, 1, 1, 2, 2, 2])
    counts = label_counts(y, [np.array([0, 1]), np.array([2, 3, 4, 5])])
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 3]])
    assert _same(
        partition(LABELS, "dirichlet", 5, seed=3, alpha=0.5), dirichlet_partition(LABELS, 5, 0.5, 3)
    )
    assert _same(partition(LABELS, "iid", 5, seed=3), iid_partition(LABELS, 5, 3))
    with pytest.raises(ValueError, match="needs alpha"):
        partition(LABELS, "dirichlet", 5)
    with pytest.raises(ValueError, match="unknown partition scheme"):
        partition(LABELS, "zipf", 5)
