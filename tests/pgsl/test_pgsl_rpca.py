"""Robust PCA: the batched APG/ADMM equal a slow per-matrix NumPy loop, and recover L + S."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medshield.defenses.pgsl import default_lambda, matrix_scale, rpca, svt
from medshield.defenses.pgsl.rpca import apg_progress, relaxed_objective

pytestmark = pytest.mark.timeout(60)


def _svt_np(x: np.ndarray, tau: float) -> np.ndarray:
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return (u * np.maximum(s - tau, 0)) @ vt


def _soft_np(x: np.ndarray, tau: float) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0)


def apg_reference(x: np.ndarray, lam: float, mu: float, iters: int,
                  continuation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One matrix at a time: FISTA on mu_k(||L||_* + lam ||S||_1) + 1/2 ||X - L - S||^2, with
    mu_k = mu, or (continuation) mu_0 = 0.99 ||X||_2 shrunk by eta = min(0.9, (mu / mu_0) **
    (1 / ceil(0.8 iters))) per iteration down to mu (Lin et al. 2009, Algorithm 2)."""
    low, sparse = np.zeros_like(x), np.zeros_like(x)
    yl, ys, t = low, sparse, 1.0
    mu_k, eta = mu, 1.0
    if continuation:
        mu_k = max(0.99 * np.linalg.norm(x, 2), mu)
        eta = min(0.9, (mu / mu_k) ** (1 / math.ceil(0.8 * iters)))
    for _ in range(iters):
        g = yl + ys - x
        nl, ns = _svt_np(yl - g / 2, mu_k / 2), _soft_np(ys - g / 2, lam * mu_k / 2)
        tn = (1 + math.sqrt(1 + 4 * t * t)) / 2
        yl, ys = nl + (t - 1) / tn * (nl - low), ns + (t - 1) / tn * (ns - sparse)
        low, sparse, t = nl, ns, tn
        mu_k = max(mu_k * eta, mu)
    return low, sparse


def admm_reference(x: np.ndarray, lam: float, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """ADMM with Candès et al.'s fixed penalty m n / (4 ||X||_1), one matrix at a time."""
    pen = x.size / (4 * np.abs(x).sum())
    y, low, sparse = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for _ in range(iters):
        low = _svt_np(x - sparse + y / pen, 1 / pen)
        sparse = _soft_np(x - low + y / pen, lam / pen)
        y = y + pen * (x - low - sparse)
    return low, sparse


def _low_rank_plus_sparse(b: int, m: int, n: int, rank: int, frac: float, seed: int):
    g = np.random.default_rng(seed)
    low = np.einsum("bik,bjk->bij", g.normal(size=(b, m, rank)), g.normal(size=(b, n, rank)))
    mask = g.random((b, m, n)) < frac
    sparse = np.where(mask, g.choice([-5.0, 5.0], size=(b, m, n)), 0.0)
    return low, sparse


@pytest.mark.parametrize("method,continuation", [("apg", True), ("apg", False),
                                                 ("admm", False)])
def test_batched_rpca_equals_the_per_matrix_reference(method, continuation):
    low0, sparse0 = _low_rank_plus_sparse(4, 12, 9, 2, 0.05, seed=0)
    x = low0 + sparse0
    lam = default_lambda(12, 9)
    iters = 25
    ours = rpca(torch.from_numpy(x), method=method, mu=0.3, max_iter=iters, tol=0.0,
                continuation=continuation)
    assert ours.iterations == iters
    for i in range(4):
        if method == "apg":  # mu is relative to the RMS entry of each matrix
            rms = np.sqrt(np.mean(x[i] ** 2))
            ref_l, ref_s = apg_reference(x[i], lam, 0.3 * rms, iters, continuation)
        else:
            ref_l, ref_s = admm_reference(x[i], lam, iters)
        np.testing.assert_allclose(ours.low_rank[i].numpy(), ref_l, atol=1e-8, rtol=1e-7)
        np.testing.assert_allclose(ours.sparse[i].numpy(), ref_s, atol=1e-8, rtol=1e-7)


def test_continuation_brings_a_small_budget_closer_to_the_same_solution():
    """PGSL's training-time budgets (a few to 20 iterations): with continuation the iterate is
    several times nearer the robust-PCA solution (rank 3 here), and of about its rank from the
    first iterations; without, it starts near full rank. Both converge to the same point."""
    g = np.random.default_rng(7)
    # non-negative rank-3 maps (C x hw = 16 x 49, like cut activations) plus attacked positions
    low0 = np.einsum("bik,bjk->bij", np.abs(g.normal(size=(6, 16, 3))),
                     np.abs(g.normal(size=(6, 49, 3))))
    x = torch.from_numpy(low0 + np.where(g.random(low0.shape) < 0.03, 4.0, 0.0))
    ref = rpca(x, mu=0.55, max_iter=3000, tol=0.0).low_rank
    plain_ref = rpca(x, mu=0.55, max_iter=3000, tol=0.0, continuation=False).low_rank
    torch.testing.assert_close(ref, plain_ref, rtol=1e-6, atol=1e-8)

    def dist(a: torch.Tensor) -> float:
        return float((a - ref).norm() / ref.norm())

    assert all(_rank(a.numpy(), 1e-3) == 3 for a in ref)
    for budget in (6, 10, 20):
        cont = rpca(x, mu=0.55, max_iter=budget, tol=0.0).low_rank
        plain = rpca(x, mu=0.55, max_iter=budget, tol=0.0, continuation=False).low_rank
        assert dist(cont) < 0.5 * dist(plain), (budget, dist(cont), dist(plain))
    cont = rpca(x, mu=0.55, max_iter=3, tol=0.0).low_rank
    plain = rpca(x, mu=0.55, max_iter=3, tol=0.0, continuation=False).low_rank
    assert max(_rank(a.numpy(), 1e-3) for a in cont) <= 4
    assert min(_rank(a.numpy(), 1e-3) for a in plain) >= 10


def test_admm_recovers_a_synthetic_low_rank_plus_sparse_matrix():
    low0, sparse0 = _low_rank_plus_sparse(3, 40, 30, 2, 0.05, seed=1)
    out = rpca(torch.from_numpy(low0 + sparse0), method="admm", max_iter=2000, tol=1e-10)
    rel = np.linalg.norm(out.low_rank.numpy() - low0) / np.linalg.norm(low0)
    assert rel < 1e-5
    assert np.array_equal(np.abs(out.sparse.numpy()) > 1e-3, sparse0 != 0)
    assert float(out.residual.max()) < 1e-8


def test_apg_tends_to_the_constrained_solution_as_mu_shrinks():
    low0, sparse0 = _low_rank_plus_sparse(2, 40, 30, 2, 0.05, seed=2)
    x = torch.from_numpy(low0 + sparse0)
    errs = []
    for mu in (0.5, 0.05, 0.005):
        out = rpca(x, mu=mu, max_iter=800, tol=1e-10)
        errs.append(np.linalg.norm(out.low_rank.numpy() - low0) / np.linalg.norm(low0))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01, errs
    # and it removes sparse corruption far better than doing nothing
    assert errs[1] < 0.2 * np.linalg.norm(sparse0) / np.linalg.norm(low0)


def test_absolute_scale_is_the_plain_reference():
    low0, sparse0 = _low_rank_plus_sparse(2, 10, 8, 2, 0.05, seed=3)
    x = low0 + sparse0
    ours = rpca(torch.from_numpy(x), mu=0.3, max_iter=15, tol=0.0, scale="absolute")
    for i in range(2):
        ref_l, _ = apg_reference(x[i], default_lambda(10, 8), 0.3, 15, continuation=True)
        np.testing.assert_allclose(ours.low_rank[i].numpy(), ref_l, atol=1e-8, rtol=1e-7)
    np.testing.assert_allclose(matrix_scale(torch.from_numpy(x)).numpy(),
                               np.sqrt((x**2).mean(axis=(1, 2))))


@pytest.mark.parametrize("c", [1e-3, 0.06, 25.0])
def test_relative_mu_is_scale_equivariant(c):
    low0, sparse0 = _low_rank_plus_sparse(3, 16, 49, 3, 0.03, seed=4)
    x = torch.from_numpy(low0 + sparse0)
    base = rpca(x, mu=0.55, max_iter=40, tol=0.0)
    scaled = rpca(c * x, mu=0.55, max_iter=40, tol=0.0)
    torch.testing.assert_close(scaled.low_rank, c * base.low_rank, rtol=1e-9, atol=1e-12 * c)
    torch.testing.assert_close(scaled.sparse, c * base.sparse, rtol=1e-9, atol=1e-12 * c)
    # the absolute reading is not: the same mu means a different problem at another scale
    a1 = rpca(x, mu=0.55, max_iter=40, tol=0.0, scale="absolute").low_rank
    ac = rpca(c * x, mu=0.55, max_iter=40, tol=0.0, scale="absolute").low_rank
    assert not torch.allclose(ac, c * a1, rtol=1e-3, atol=1e-6 * c)


def _rank(a: np.ndarray, rel: float = 1e-6) -> int:
    s = np.linalg.svd(a, compute_uv=False)
    return int((s > rel * s[0]).sum())


def test_small_activations_are_not_collapsed_to_rank_one():
    """The reduced run's failure: activations of RMS ~0.06 (a C x hw = 16 x 49 matrix of
    non-negative maps of rank 4 plus a few attacked positions) with mu = 0.55.
    The absolute mu keeps one direction; the relative one keeps the signal's rank."""
    g = np.random.default_rng(5)
    rank = 4
    low0 = np.einsum("bik,bjk->bij", np.abs(g.normal(size=(4, 16, rank))),
                     np.abs(g.normal(size=(4, 49, rank))))
    low0 = low0 / np.sqrt((low0**2).mean()) * 0.06  # RMS 0.06, like the cut activations
    spikes = np.where(g.random(low0.shape) < 0.02, 0.3, 0.0)
    x = torch.from_numpy(low0 + spikes)
    rel = rpca(x, mu=0.55, max_iter=100, tol=1e-8)
    ab = rpca(x, mu=0.55, max_iter=100, tol=1e-8, scale="absolute")
    for i in range(4):
        assert _rank(ab.low_rank[i].numpy(), 1e-3) <= 1
        assert _rank(rel.low_rank[i].numpy(), 1e-3) == rank
    err_rel = np.linalg.norm(rel.low_rank.numpy() - low0) / np.linalg.norm(low0)
    err_abs = np.linalg.norm(ab.low_rank.numpy() - low0) / np.linalg.norm(low0)
    err_none = np.linalg.norm(spikes) / np.linalg.norm(low0)
    assert err_rel < 0.5 * err_abs and err_rel < err_none, (err_rel, err_abs, err_none)


def test_gram_svt_matches_exact_svt():
    g = torch.Generator().manual_seed(0)
    for shape in ((6, 8, 20), (6, 20, 8)):
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        tau = torch.linspace(0.5, 2.0, shape[0], dtype=torch.float64)
        torch.testing.assert_close(svt(x, tau, svd="gram"), svt(x, tau, svd="exact"),
                                   atol=1e-9, rtol=1e-9)


def test_rpca_single_matrix_and_errors():
    x = torch.rand(5, 4)
    out = rpca(x, max_iter=3)
    assert out.low_rank.shape == (5, 4) and out.residual.shape == (1,)
    with pytest.raises(ValueError, match="mu"):
        rpca(x, mu=0)
    with pytest.raises(TypeError, match="floating"):
        rpca(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="scale"):
        rpca(x, scale="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        rpca(x, method="nope")  # type: ignore[arg-type]


def test_relaxed_objective_equals_a_per_matrix_numpy_sum():
    low0, sparse0 = _low_rank_plus_sparse(3, 6, 9, 2, 0.1, seed=4)
    x = torch.from_numpy(low0 + sparse0)
    out = rpca(x, mu=0.4, max_iter=7, tol=0.0)
    got = relaxed_objective(x, out.low_rank, out.sparse, mu=0.4)
    for b in range(3):
        xb, lb, sb = x[b].numpy(), out.low_rank[b].numpy(), out.sparse[b].numpy()
        m = 0.4 * np.sqrt((xb ** 2).mean())
        want = m * (np.linalg.svd(lb, compute_uv=False).sum() + default_lambda(6, 9)
                    * np.abs(sb).sum()) + 0.5 * ((xb - lb - sb) ** 2).sum()
        assert float(got[b]) == pytest.approx(want, rel=1e-9)


def test_apg_progress_reports_a_partial_recovery():
    low0, sparse0 = _low_rank_plus_sparse(4, 8, 20, 2, 0.05, seed=5)
    x = torch.from_numpy(low0 + sparse0).float()
    few = apg_progress(x, 3, reference_iters=300)
    many = apg_progress(x, 100, reference_iters=300)
    same = apg_progress(x, 300, reference_iters=300)
    assert 0.0 < few["decrease_share"] < many["decrease_share"] <= 1.0 + 1e-6
    assert few["low_rank_distance"] > many["low_rank_distance"]
    assert same["low_rank_distance"] == pytest.approx(0.0, abs=1e-6)
    assert same["decrease_share"] == pytest.approx(1.0)
    assert 1.0 <= many["reference_rank"] <= 8.0
