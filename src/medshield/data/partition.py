"""Federated partitions of a labelled dataset: IID, Dirichlet label skew, shards, hierarchies.

Every function takes the ``(N,)`` label array and returns index arrays (sorted ``int64``,
disjoint, together covering ``range(N)``), so the same partition applies to images, tables
or secret shares. All randomness comes from ``seed`` (an int or a NumPy ``Generator``):
the same seed gives the same partition.

References
----------
* IID and shards: B. McMahan et al., "Communication-efficient learning of deep networks
  from decentralized data", AISTATS 2017 (shards = the "pathological non-IID" split).
* Dirichlet label skew: T.-M. H. Hsu, H. Qi, M. Brown, "Measuring the effects of
  non-identical data distribution for federated visual classification", arXiv:1909.06335
  (2019); the per-class sampling with size balancing follows Q. Li et al., "Federated
  learning on non-IID data silos: an experimental study", ICDE 2022.
* Two-level hospital -> device partitions: the client hierarchy of hierarchical FL
  (e.g. L. Liu et al., "Client-edge-cloud hierarchical federated learning", ICC 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "iid_partition",
    "dirichlet_partition",
    "shard_partition",
    "hierarchical_partition",
    "partition",
    "label_counts",
]

Seed = int | np.random.Generator


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _labels(labels: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    return y


def _check_clients(n: int, num_clients: int, min_size: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if n < num_clients * min_size:
        raise ValueError(
            f"{n} samples cannot give {num_clients} clients at least {min_size} each; "
            "use fewer clients or a smaller min_size"
        )


def iid_partition(labels: np.ndarray, num_clients: int, seed: Seed = 0) -> list[np.ndarray]:
    """Shuffle and deal the samples into ``num_clients`` parts of sizes differing by <= 1."""
    y = _labels(labels)
    _check_clients(len(y), num_clients, 1)
    perm = _rng(seed).permutation(len(y))
    return [np.sort(p).astype(np.int64) for p in np.array_split(perm, num_clients)]


def dirichlet_partition(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    seed: Seed = 0,
    *,
    min_size: int = 1,
    balance: bool = True,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Label-skewed partition: client class mixes drawn from ``Dirichlet(alpha)``.

    For each class ``c`` a vector ``p ~ Dir(alpha 1_K)`` is drawn and the class's samples
    are cut in proportions ``p``. Small ``alpha`` (0.1) gives clients dominated by a few
    classes; large ``alpha`` (100) approaches IID.

    Parameters
    ----------
    labels
        ``(N,)`` integer labels.
    num_clients
        ``K``.
    alpha
        Concentration (> 0).
    seed
        Int seed or ``Generator``.
    min_size
        Every client gets at least this many samples (default 1: no empty client).
    balance
        Give no more samples of a class to clients that already hold ``N / K`` samples
        (keeps client sizes comparable, as in Li et al. 2022).
    max_tries
        Redraws until every client has ``min_size`` samples. If none succeeds, the
        smallest clients are topped up with random samples moved from the largest client,
        which softens the skew only slightly.

    Returns
    -------
    ``K`` sorted, disjoint int64 index arrays covering ``range(N)``.
    """
    y = _labels(labels)
    n = len(y)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    _check_clients(n, num_clients, min_size)
    rng = _rng(seed)
    classes = np.unique(y)
    parts: list[list[int]] = [[] for _ in range(num_clients)]
    for _ in range(max(1, max_tries)):
        parts = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            p = rng.dirichlet(np.full(num_clients, alpha))
            if balance:
                sizes = np.array([len(q) for q in parts])
                p = p * (sizes < n / num_clients)
            if not p.sum() > 0:  # every client full, or the draw underflowed to zero
                p = np.ones(num_clients)
            cuts = (np.cumsum(p / p.sum()) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if min(len(q) for q in parts) >= min_size:
            break
    else:
        while min(len(q) for q in parts) < min_size:
            small = int(np.argmin([len(q) for q in parts]))
            big = int(np.argmax([len(q) for q in parts]))
            moved = parts[big].pop(int(rng.integers(len(parts[big]))))
            parts[small].append(moved)
    return [np.sort(np.asarray(q, dtype=np.int64)) for q in parts]


def shard_partition(
    labels: np.ndarray, num_clients: int, shards_per_client: int = 2, seed: Seed = 0
) -> list[np.ndarray]:
    """McMahan et al.'s pathological non-IID split: sort by label, cut into
    ``num_clients * shards_per_client`` shards, give each client ``shards_per_client``
    random shards (so a client sees about ``shards_per_client`` classes)."""
    y = _labels(labels)
    num_shards = num_clients * shards_per_client
    _check_clients(len(y), num_shards, 1)
    rng = _rng(seed)
    order = np.lexsort((rng.random(len(y)), y))  # by label, random within a label
    shards = np.array_split(order, num_shards)
    assign = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([shards[s] for s in row])).astype(np.int64) for row in assign]


def partition(
    labels: np.ndarray, scheme: str, num_clients: int, seed: Seed = 0, **options: float
) -> list[np.ndarray]:
    """Dispatch by name: ``"iid"``, ``"dirichlet"`` (``alpha``, ``min_size``) or ``"shards"``
    (``shards_per_client``)."""
    key = scheme.lower()
    if key == "iid":
        if options:
            raise ValueError(f"iid partition takes no options, got {sorted(options)}")
        return iid_partition(labels, num_clients, seed)
    if key == "dirichlet":
        if "alpha" not in options:
            raise ValueError("the dirichlet scheme needs alpha=..., e.g. alpha=0.5")
        opts = dict(options)
        alpha = float(opts.pop("alpha"))
        min_size = int(opts.pop("min_size", 1))
        if opts:
            raise ValueError(f"unknown dirichlet options {sorted(opts)}")
        return dirichlet_partition(labels, num_clients, alpha, seed, min_size=min_size)
    if key in ("shards", "shard"):
        spc = int(options.get("shards_per_client", 2))
        return shard_partition(labels, num_clients, spc, seed)
    raise ValueError(f"unknown partition scheme {scheme!r}; use 'iid', 'dirichlet' or 'shards'")


def hierarchical_partition(
    labels: np.ndarray,
    num_hospitals: int,
    devices_per_hospital: int | Sequence[int],
    seed: Seed = 0,
    *,
    hospital_scheme: str = "dirichlet",
    device_scheme: str = "iid",
    hospital_alpha: float = 0.5,
    device_alpha: float = 0.5,
    min_size: int = 1,
) -> list[list[np.ndarray]]:
    """Two-level partition: hospitals by one scheme, devices within each hospital by another.

    Parameters
    ----------
    labels
        ``(N,)`` integer labels.
    num_hospitals
        Number of hospitals (edge servers).
    devices_per_hospital
        Devices per hospital: one int for all, or one per hospital.
    seed
        Int seed or ``Generator``.
    hospital_scheme, device_scheme
        ``"iid"``, ``"dirichlet"`` or ``"shards"``.
    hospital_alpha, device_alpha
        Dirichlet concentrations of each level.
    min_size
        Minimum samples per device (Dirichlet levels).

    Returns
    -------
    ``out[h][d]``: sorted int64 indices *into the original labels* of device ``d`` of
    hospital ``h``. All devices together are disjoint and cover ``range(N)``.
    """
    y = _labels(labels)
    counts = (
        [int(devices_per_hospital)] * num_hospitals
        if isinstance(devices_per_hospital, int | np.integer)
        else [int(d) for d in devices_per_hospital]
    )
    if len(counts) != num_hospitals:
        raise ValueError(
            f"devices_per_hospital has {len(counts)} entries for {num_hospitals} hospitals"
        )
    rng = _rng(seed)
    hospitals = _one_level(
        y, hospital_scheme, num_hospitals, hospital_alpha, rng, max(counts) * min_size
    )
    out = []
    for h, idx in enumerate(hospitals):
        local = _one_level(y[idx], device_scheme, counts[h], device_alpha, rng, min_size)
        out.append([idx[d] for d in local])
    return out


def _one_level(
    y: np.ndarray, scheme: str, k: int, alpha: float, rng: np.random.Generator, min_size: int
) -> list[np.ndarray]:
    if scheme.lower() == "dirichlet":
        return dirichlet_partition(y, k, alpha, rng, min_size=min_size)
    return partition(y, scheme, k, rng)


def label_counts(
    labels: np.ndarray, parts: Sequence[np.ndarray], num_classes: int | None = None
) -> np.ndarray:
    """``(K, C)`` matrix: samples of each class held by each part."""
    y = _labels(labels)
    c = int(y.max()) + 1 if num_classes is None else num_classes
    return (
        np.stack([np.bincount(y[p], minlength=c)[:c] for p in parts])
        if parts
        else np.zeros((0, c), int)
    )
