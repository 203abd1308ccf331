"""Deterministic stratified / grouped splits and train-statistics standardisation."""

from __future__ import annotations

import numpy as np
import pytest

from medshield.data.splits import group_split, split_sizes, standardize, stratified_split


def test_split_sizes_sum_and_round() -> None:
    assert split_sizes(569, (0.7, 0.1, 0.2)) == [398, 57, 114]
    assert split_sizes(5000, (0.7, 0.1, 0.2)) == [3500, 500, 1000]
    for n in (0, 1, 7, 90, 1001):
        assert sum(split_sizes(n, (0.7, 0.1, 0.2))) == n
    with pytest.raises(ValueError):
        split_sizes(10, (-1, 2))


def test_stratified_split_is_a_partition_with_the_class_mix() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(5, size=997, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    parts = stratified_split(y, (0.7, 0.1, 0.2), seed=0)
    assert [len(p) for p in parts] == split_sizes(len(y), (0.7, 0.1, 0.2))
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(y) and set(joined) == set(range(len(y)))
    total = np.bincount(y, minlength=5)
    for p in parts:
        # slow, obvious reference: the proportional share of every class, within 1.5 samples
        expected = total * len(p) / len(y)
        assert np.all(np.abs(np.bincount(y[p], minlength=5) - expected) <= 1.5)


def test_stratified_split_is_deterministic_and_seed_dependent() -> None:
    y = np.arange(300) % 3
    a = stratified_split(y, [200, 50, 50], seed=7)
    b = stratified_split(y, [200, 50, 50], seed=7)
    c = stratified_split(y, [200, 50, 50], seed=8)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    with pytest.raises(ValueError, match="sum to 300"):
        stratified_split(y, [100, 100], seed=0)


def test_group_split_keeps_groups_whole() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), rng.integers(1, 40, 30))
    parts = group_split(groups, (0.7, 0.1, 0.2), seed=3)
    joined = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(joined, np.arange(len(groups)))
    sets = [set(groups[p]) for p in parts]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert abs(len(parts[0]) / len(groups) - 0.7) < 0.15
    again = group_split(groups, (0.7, 0.1, 0.2), seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(parts, again, strict=True))


def test_standardize_uses_train_statistics_only() -> None:
    rng = np.random.default_rng(0)
    tr, te = rng.normal(3, 2, (50, 4)), rng.normal(10, 5, (20, 4))
    tr[:, 3] = 1.0  # a constant column maps to 0, not NaN
    (a, b), mean, std = standardize(tr, te)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a[:, :3].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a[:, :3].std(0), 1, atol=1e-5)
    np.testing.assert_allclose(
        b, (te - tr.mean(0)) / np.where(tr.std(0) > 0, tr.std(0), 1), rtol=1e-5
    )
    assert np.all(a[:, 3] == 0)
    (c,), _, _ = standardize(tr, columns=np.array([True, False, True, False]))
    np.testing.assert_array_equal(c[:, 1], tr[:, 1].astype(np.float32))
