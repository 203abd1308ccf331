"""Algorithm 4 (EICPPCloud): clipping, noise, sampling, failures; against Flower's DP wrapper."""

from __future__ import annotations

import numpy as np
import pytest
from _fl_helpers import scripted_round
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

from medshield.federated import EICPPCloud, FLConfig, HospitalAccountant, clip_update

ARRAYS = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}


def deltas(n: int, seed: int = 0, scale: float = 1.0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{k: (rng.normal(size=v.shape) * scale * (i + 1)).astype(np.float32)
             for k, v in ARRAYS.items()} for i in range(n)]


def reference(ds: list[dict[str, np.ndarray]], clip: float) -> dict[str, np.ndarray]:
    """Clip each update as one vector, average (the obvious computation)."""
    out = {k: np.zeros_like(v, dtype=np.float64) for k, v in ARRAYS.items()}
    for d in ds:
        norm = np.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in d.values()))
        s = min(1.0, clip / norm)
        for k in out:
            out[k] += d[k] * s / len(ds)
    return out


def test_clip_update() -> None:
    u = [np.array([3.0, 0.0]), np.array([4.0])]
    c, norm = clip_update(u, 1.0)
    assert norm == pytest.approx(5.0)
    assert np.allclose(np.concatenate(c), [0.6, 0.0, 0.8])
    same, _ = clip_update(u, 10.0)
    assert same is u


def test_aggregate_is_the_clipped_average() -> None:
    ds = deltas(3)
    cfg = FLConfig(hospitals=3, update_clip=1.5)
    agg, metrics, _ = scripted_round(EICPPCloud(cfg=cfg), ARRAYS, ds)
    ref = reference(ds, 1.5)
    for k in ARRAYS:
        assert np.allclose(agg[k].numpy(), ref[k], atol=1e-6)
    assert metrics["replied"] == 3 and metrics["failed"] == 0 and metrics["clipped"] >= 1


def test_matches_flowers_server_side_clipping_wrapper() -> None:
    """With zero noise both compute mean(clip(update)); Flower's wrapper is the peer."""
    ds = deltas(4, seed=1)
    cfg = FLConfig(hospitals=4, update_clip=0.7)
    ours, _, _ = scripted_round(EICPPCloud(cfg=cfg), ARRAYS, ds)
    flower = DifferentialPrivacyServerSideFixedClipping(
        FedAvg(fraction_evaluate=0.0, min_available_nodes=4, min_train_nodes=4,
               weighted_by_key="dp-weight"),
        noise_multiplier=0.0, clipping_norm=0.7, num_sampled_clients=4)
    theirs, _, _ = scripted_round(flower, ARRAYS, ds)
    for k in ARRAYS:
        assert np.allclose(ours[k].numpy(), theirs[k].numpy(), atol=1e-6)


def test_noise_scale_and_accounting() -> None:
    arrays = {"w": np.zeros((200, 100), np.float32)}
    zero = [{"w": np.zeros((200, 100), np.float32)} for _ in range(4)]
    cfg = FLConfig(hospitals=4, update_clip=2.0, noise_multiplier=1.5, seed=3)
    acc = HospitalAccountant(population=4, sample_size=4)
    agg, metrics, _ = scripted_round(EICPPCloud(cfg=cfg, noise_multiplier=1.5,
                                                accountant=acc), arrays, zero)
    noise = agg["w"].numpy()
    # sum gets N(0, (sigma C)^2), divided by the expected m = 4
    assert noise.std() == pytest.approx(1.5 * 2.0 / 4, rel=0.03)
    assert acc.rounds == 1
    assert metrics["epsilon"] == pytest.approx(acc.epsilon())


def test_noise_is_reproducible_per_round() -> None:
    arrays = {"w": np.zeros(50, np.float32)}
    zero = [{"w": np.zeros(50, np.float32)} for _ in range(2)]
    cfg = FLConfig(hospitals=2, update_clip=1.0, noise_multiplier=1.0, seed=5)

    def once(r: int) -> np.ndarray:
        s = EICPPCloud(cfg=cfg, noise_multiplier=1.0,
                       accountant=HospitalAccountant(population=2, sample_size=2))
        return scripted_round(s, arrays, zero, server_round=r)[0]["w"].numpy()

    assert np.array_equal(once(2), once(2))
    assert not np.array_equal(once(2), once(3))


def test_a_crashed_hospital_does_not_lose_the_round() -> None:
    ds = deltas(3, seed=2)
    cfg = FLConfig(hospitals=3, update_clip=100.0, min_hospitals=2)
    agg, metrics, replies = scripted_round(EICPPCloud(cfg=cfg), ARRAYS, ds, fail={1})
    assert sum(r.has_error() for r in replies) == 1
    assert "crashed mid-round" in next(r for r in replies if r.has_error()).error.reason
    ref = reference([ds[0], ds[2]], 100.0)
    for k in ARRAYS:
        assert np.allclose(agg[k].numpy(), ref[k], atol=1e-6)
    assert metrics["replied"] == 2 and metrics["failed"] == 1


def test_too_few_replies_keep_the_model_and_release_nothing() -> None:
    cfg = FLConfig(hospitals=3, update_clip=1.0, noise_multiplier=1.0, min_hospitals=2)
    acc = HospitalAccountant(population=3, sample_size=3)
    s = EICPPCloud(cfg=cfg, noise_multiplier=1.0, accountant=acc)
    agg, metrics, _ = scripted_round(s, ARRAYS, deltas(3), fail={0, 2})
    assert agg is None and metrics is None
    assert acc.rounds == 0 and s.last_info["released"] == 0.0


def test_fixed_sampling_is_seeded_and_poisson_varies() -> None:
    cfg = FLConfig(hospitals=10, sample_rate=0.3, seed=1)
    s = EICPPCloud(cfg=cfg)
    nodes = list(range(1, 11))
    a, b = s.sample(4, nodes), s.sample(4, nodes)
    assert a == b and len(a) == 3 and len(set(a)) == 3
    assert any(s.sample(r, nodes) != a for r in range(5, 10))
    big = [2**64 - 5, 2**63 + 7, 12]  # uint64 node ids must survive sampling unrounded
    assert set(EICPPCloud(cfg=FLConfig(hospitals=3, sample_rate=0.7)).sample(1, big)) <= set(big)
    p = EICPPCloud(cfg=FLConfig(hospitals=10, sample_rate=0.3, sampling="poisson"))
    sizes = {len(p.sample(r, nodes)) for r in range(1, 40)}
    assert len(sizes) > 2


def test_noise_needs_an_accountant_and_a_clip() -> None:
    with pytest.raises(ValueError, match="accountant"):
        EICPPCloud(cfg=FLConfig(update_clip=1.0), noise_multiplier=1.0)
    with pytest.raises(ValueError, match="clip"):
        FLConfig(noise_multiplier=1.0)


def test_seeded_noise_warns_and_os_noise_is_fresh_each_run() -> None:
    from medshield.secure import SecurityWarning

    arrays = {"w": np.zeros(50, np.float32)}
    zero = [{"w": np.zeros(50, np.float32)} for _ in range(2)]

    def once(source: str) -> np.ndarray:
        cfg = FLConfig(hospitals=2, update_clip=1.0, noise_multiplier=1.0, seed=5,
                       noise_source=source)
        s = EICPPCloud(cfg=cfg, noise_multiplier=1.0,
                       accountant=HospitalAccountant(population=2, sample_size=2))
        return scripted_round(s, arrays, zero, server_round=2)[0]["w"].numpy()

    with pytest.warns(SecurityWarning, match="seed can remove the noise"):
        once("seeded")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)
        a, b = once("os"), once("os")
    assert not np.array_equal(a, b)
    assert a.std() == pytest.approx(1.0 / 2, rel=0.4)  # same scale as the seeded mode
    with pytest.raises(ValueError, match="noise_source"):
        FLConfig(noise_source="urandom")
