"""Robust PCA by proximal gradient (APG) and by ADMM, vectorised over a batch of matrices.

PGSL (Khowaja et al., IEEE TNSE 2022, section IV-C) recovers pixel-attacked data with "the
proximal gradient method", calling its problem robust principal component analysis [31]. Its
eq. 2, :math:`\\min \\|\\hat x\\|_* - \\lambda \\|\\overline{Map}\\|_*`, is garbled in the text
(a difference of two nuclear norms is not convex, although the paper calls it so, and the
constraint tying the variables to the data is missing). We implement the sound robust-PCA
problem of the paper's references [30], [31] (Candès, Li, Ma and Wright, J. ACM 2011; Lin,
Ganesh, Wright, Wu, Chen and Ma, 2009): split an observed matrix :math:`X` into a low-rank part
:math:`L` (the recovered data) and a sparse part :math:`S` (the pixel attack),

.. math:: \\min_{L, S} \\; \\|L\\|_* + \\lambda \\|S\\|_1 \\quad \\text{s.t.} \\quad L + S = X,
   \\qquad \\lambda = 1 / \\sqrt{\\max(m, n)} \\text{ by default.}

``method="apg"`` solves the paper's relaxation (eqs. 3-5, with relaxation parameter
:math:`\\mu > 0`; it tends to the constrained problem as :math:`\\mu \\to 0`)

.. math:: \\min_{L, S} \\; \\mu\\, \\sigma(X) \\big(\\|L\\|_* + \\lambda \\|S\\|_1\\big)
          + \\tfrac12 \\|X - L - S\\|_F^2,
   \\qquad \\sigma(X) = \\|X\\|_F / \\sqrt{m n},

with :math:`\\mu` *relative* to the scale of each matrix: :math:`\\sigma(X)` is the
root-mean-square entry of :math:`X` (:func:`matrix_scale`). The paper's
:math:`\\mu \\in [0.05, 1]` (0.55 chosen, Fig. 3) thus reads in units of a typical entry
(for images in [0, 1], of RMS about 0.3, the thresholds are about 0.3 of the absolute
reading's), whatever the units of :math:`X`: the recovery is
scale-equivariant, ``rpca(c * X).low_rank == c * rpca(X).low_rank`` for ``c > 0``, as the
constrained problem is (and as standard RPCA is, whose :math:`\\mu` is proportional to
:math:`\\|X\\|`, Lin et al. 2009). An absolute :math:`\\mu` (``scale="absolute"``, the earlier
behaviour) means different things for images in [0, 1] and for cut-layer activations of RMS
0.06, where ``mu / 2 = 0.275`` thresholds all but one singular value away (a rank-1 recovery).

by accelerated proximal gradient (FISTA; Lin et al. 2009, Algorithm 2). The smooth part's
gradient is :math:`(-(X-L-S), -(X-L-S))`, Lipschitz with constant :math:`\\mathcal L = 2`
(the paper's eq. 6), so the step is :math:`1/2`; the proximal maps are singular-value
thresholding (:math:`L`) and soft thresholding (:math:`S`).

*Continuation* (Lin et al.'s Algorithm 2, ``continuation=True``, the default): the relaxation
starts at :math:`\\mu_0 = 0.99 \\|X\\|_2` (the first iterate has rank one) and shrinks
geometrically, :math:`\\mu_{k+1} = \\max(\\eta \\mu_k, \\bar\\mu)`, to the target
:math:`\\bar\\mu`; the fixed point is the same. From zero *without* continuation, the data term
dominates: a few iterations remove 99% of the objective's decrease while the iterate is still
full rank, far from the solution. PGSL runs a fixed, small iteration budget during training, so
the schedule is fitted to the budget: :math:`\\eta = \\min(0.9, (\\bar\\mu/\\mu_0)^{1/k_c})`
with :math:`k_c = \\lceil 0.8\\,` ``max_iter`` :math:`\\rceil` reaches :math:`\\bar\\mu`
by 80% of the budget (Lin et al.'s :math:`\\eta = 0.9` when the budget is large). Measured on
cut-layer activations (``medshield bench split``'s recovery rows, and
``tests/pgsl/test_pgsl_rpca.py`` on low-rank plus sparse matrices), this brings a fixed budget
several times closer to the solution.

``method="admm"`` solves the constrained problem exactly by the augmented Lagrangian method
with alternating directions and the fixed penalty :math:`mn / (4 \\|X\\|_1)` of Candès et al.
(2011, section 5), for reference and tests (the inexact ALM of Lin et al. with a growing
penalty is faster but can stall at a feasible, slightly suboptimal point).

Both run on a batch ``(B, m, n)`` at once (batched SVDs), on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["RPCAResult", "rpca", "svt", "soft_threshold", "default_lambda", "matrix_scale",
           "relaxed_objective", "apg_progress", "continuation_schedule"]

Method = Literal["apg", "admm"]
SVD = Literal["exact", "gram"]
Scale = Literal["relative", "absolute"]


@dataclass
class RPCAResult:
    """Output of :func:`rpca`: ``low_rank + sparse ~ X`` (exactly, for ADMM at convergence).

    Attributes
    ----------
    low_rank, sparse : ``(B, m, n)``
    iterations : iterations run (the same for the whole batch)
    residual : ``(B,)`` relative residual ``||X - L - S||_F / ||X||_F``
    """

    low_rank: Tensor
    sparse: Tensor
    iterations: int
    residual: Tensor


def default_lambda(m: int, n: int) -> float:
    """Candès et al.'s :math:`\\lambda = 1/\\sqrt{\\max(m, n)}`."""
    return 1.0 / math.sqrt(max(m, n))


def matrix_scale(x: Tensor) -> Tensor:
    """Root-mean-square entry :math:`\\|X\\|_F / \\sqrt{m n}` of each matrix.

    ``x``: ``(B, m, n)``; returns ``(B,)`` (clamped away from 0, so an all-zero matrix gives
    thresholds of about 0 and is recovered as 0). The unit in which :func:`rpca`'s relative
    :math:`\\mu` is measured. (The RMS *singular value* or the spectral norm, larger by
    :math:`\\sqrt{\\max(m, n)}` or more, still collapses non-negative activations, whose
    leading singular value holds most of the energy, to rank 1 at :math:`\\mu = 0.55`.)
    """
    k = x.shape[-2] * x.shape[-1]
    norm = torch.linalg.vector_norm(x, dim=(-2, -1)) / math.sqrt(k)
    return norm.clamp_min(torch.finfo(x.dtype).tiny)


def relaxed_objective(
    x: Tensor, low: Tensor, sparse: Tensor, *, mu: float = 0.55, lam: float | None = None,
    scale: Scale = "relative",
) -> Tensor:
    """The APG problem's objective per matrix, ``(B,)``, for ``(B, m, n)`` inputs.

    :math:`\\mu' (\\|L\\|_* + \\lambda \\|S\\|_1) + \\frac12 \\|X - L - S\\|_F^2` with
    :math:`\\mu' = \\mu \\sigma(X)` (``scale="relative"``) or :math:`\\mu` (``"absolute"``),
    computed with exact singular values: the reference :func:`rpca`'s ``method="apg"`` descends.
    """
    lam = default_lambda(x.shape[-2], x.shape[-1]) if lam is None else float(lam)
    m = mu * matrix_scale(x) if scale == "relative" else torch.full(
        (x.shape[0],), float(mu), dtype=x.dtype, device=x.device)
    nuclear = torch.linalg.svdvals(low).sum(-1)
    l1 = sparse.abs().sum((-2, -1))
    return m * (nuclear + lam * l1) + 0.5 * _sq_norms(x - low - sparse)


def apg_progress(x: Tensor, iters: int, *, mu: float = 0.55, reference_iters: int = 1000,
                 svd: SVD = "gram") -> dict[str, float]:
    """How far ``iters`` APG iterations from zero get on the matrices ``x`` ``(B, m, n)``.

    Returns the share of the objective's decrease that ``reference_iters`` iterations achieve
    (``(f(0) - f(iters)) / (f(0) - f(reference))``, batch totals), the relative distance
    ``||L_iters - L_ref|| / ||L_ref||`` of the low-rank parts, and the mean numerical rank of
    both (singular values above ``1e-3`` of the largest). PGSL's training-time recovery runs a
    handful of iterations; this says how much of the robust-PCA solution that is.
    """
    def run(k: int) -> RPCAResult:
        return rpca(x, mu=mu, method="apg", max_iter=k, tol=0.0, svd=svd)

    short, ref = run(iters), run(reference_iters)
    zero = torch.zeros_like(x)
    f0 = float(relaxed_objective(x, zero, zero, mu=mu).sum())
    fk = float(relaxed_objective(x, short.low_rank, short.sparse, mu=mu).sum())
    fr = float(relaxed_objective(x, ref.low_rank, ref.sparse, mu=mu).sum())

    def rank(a: Tensor) -> float:
        sv = torch.linalg.svdvals(a)
        return float((sv > 1e-3 * sv[..., :1].clamp_min(1e-30)).sum(-1).float().mean())

    return {
        "decrease_share": (f0 - fk) / max(f0 - fr, 1e-30),
        "low_rank_distance": float((short.low_rank - ref.low_rank).norm()
                                   / ref.low_rank.norm().clamp_min(1e-30)),
        "rank": rank(short.low_rank),
        "reference_rank": rank(ref.low_rank),
        "objective_ratio": fk / max(fr, 1e-30),
    }


def soft_threshold(x: Tensor, tau: Tensor | float) -> Tensor:
    """``sign(x) * max(|x| - tau, 0)``, the proximal map of ``tau * ||.||_1``.

    Computed as ``x - clamp(x, -tau, tau)`` (the same values, two passes over memory instead
    of five).
    """
    if isinstance(tau, Tensor):
        return x - torch.maximum(torch.minimum(x, tau), -tau)
    return x - x.clamp(-tau, tau)


def svt(x: Tensor, tau: Tensor | float, *, svd: SVD = "exact") -> Tensor:
    """Singular-value thresholding ``U diag(max(s - tau, 0)) V^T`` of each matrix of ``x``.

    The proximal map of ``tau * ||.||_*``. ``x``: ``(B, m, n)``; ``tau``: a float or ``(B,)``.
    ``svd="gram"`` works from the eigen-decomposition of the smaller Gram matrix
    (``x x^T`` or ``x^T x``), several times faster for small matrices on CPUs; singular values
    below about ``sqrt(eps) * s_max`` are inexact there, harmless when ``tau`` exceeds them.
    """
    tau_t = torch.as_tensor(tau, dtype=x.dtype, device=x.device)
    if tau_t.dim() == 1:
        tau_t = tau_t.view(-1, 1)
    if svd == "exact":
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        return (u * (s - tau_t).clamp_min(0).unsqueeze(-2)) @ vh
    if svd != "gram":
        raise ValueError(f"svd must be 'exact' or 'gram', got {svd!r}")
    wide = x.shape[-2] <= x.shape[-1]
    gram = x @ x.mT if wide else x.mT @ x
    evals, vecs = torch.linalg.eigh(gram)
    s = evals.clamp_min(0).sqrt()
    shrink = torch.where(s > tau_t, (s - tau_t) / s.clamp_min(torch.finfo(x.dtype).tiny), 0.0)
    proj = (vecs * shrink.unsqueeze(-2)) @ vecs.mT
    return proj @ x if wide else x @ proj


def rpca(
    x: Tensor,
    *,
    lam: float | None = None,
    mu: float = 0.55,
    method: Method = "apg",
    max_iter: int = 100,
    tol: float = 1e-6,
    svd: SVD = "exact",
    scale: Scale = "relative",
    continuation: bool = True,
) -> RPCAResult:
    """Split every matrix of ``x`` into low-rank plus sparse parts (see the module docstring).

    Parameters
    ----------
    x
        ``(B, m, n)`` or ``(m, n)`` (floating point).
    lam
        Weight of the sparse term; default :func:`default_lambda`.
    mu
        Relaxation parameter of the APG problem (PGSL's :math:`\\mu`, 0.55 in the paper, in
        [0.05, 1] in its Fig. 3), relative to each matrix's :func:`matrix_scale` (see the
        module docstring); ignored by ADMM.
    method
        ``"apg"`` (the paper's relaxed proximal gradient) or ``"admm"`` (exact constraint).
    max_iter, tol
        Stop after ``max_iter`` iterations or when the relative change of ``(L, S)`` (APG,
        checked once the relaxation has reached ``mu``) or the relative residual (ADMM) falls
        below ``tol`` for every matrix of the batch (ADMM needs a few hundred iterations for
        ``tol=1e-7``).
    svd
        See :func:`svt`.
    scale
        ``"relative"`` (default): the thresholds are ``mu * matrix_scale(X)`` (and ``lam`` times
        that), so the recovery is scale-equivariant. ``"absolute"``: ``mu`` as is (only
        meaningful for data of unit scale).
    continuation
        APG only: shrink the relaxation from ``0.99 ||X||_2`` to ``mu`` within 80% of
        ``max_iter`` (see the module docstring); ``False``: plain FISTA at ``mu`` from the
        first iteration.

    Returns
    -------
    RPCAResult
        With the input's leading shape (a single matrix gives ``(m, n)`` parts).
    """
    if not x.is_floating_point():
        raise TypeError("rpca needs a floating-point tensor; convert with x.float()")
    single = x.dim() == 2
    if single:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"rpca expects (B, m, n) or (m, n) matrices, got shape {tuple(x.shape)}")
    if mu <= 0:
        raise ValueError(f"the relaxation mu must be > 0, got {mu}")
    if scale not in ("relative", "absolute"):
        raise ValueError(f"scale must be 'relative' or 'absolute', got {scale!r}")
    lam = default_lambda(x.shape[-2], x.shape[-1]) if lam is None else float(lam)
    if method == "apg":
        mus = mu * matrix_scale(x) if scale == "relative" else \
            torch.full((x.shape[0],), float(mu), dtype=x.dtype, device=x.device)
        low, sparse, it = _apg(x, lam, mus, max_iter, tol, svd, continuation)
    elif method == "admm":
        low, sparse, it = _admm(x, lam, max_iter, tol, svd)
    else:
        raise ValueError(f"method must be 'apg' or 'admm', got {method!r}")
    xnorm = x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    res = (x - low - sparse).flatten(1).norm(dim=1) / xnorm
    if single:
        low, sparse = low[0], sparse[0]
    return RPCAResult(low_rank=low, sparse=sparse, iterations=it, residual=res)


#: Lin et al.'s (2009) continuation factor, and the share of a fixed budget within which the
#: relaxation reaches its target
ETA = 0.9
CONTINUATION_SHARE = 0.8


def continuation_schedule(x: Tensor, mu: Tensor, max_iter: int) -> tuple[Tensor, Tensor]:
    """``(mu_0, eta)``, each ``(B,)``: the start ``0.99 ||X||_2`` and the factor
    ``min(0.9, (mu / mu_0) ** (1 / ceil(0.8 max_iter)))`` of APG's continuation.

    The spectral norm comes from the eigenvalues of the smaller Gram matrix (it sets only the
    schedule's start, so float32's precision is ample).
    """
    gram = x @ x.mT if x.shape[-2] <= x.shape[-1] else x.mT @ x
    top = torch.linalg.eigvalsh(gram)[..., -1].clamp_min(0).sqrt()
    mu0 = torch.maximum(0.99 * top, mu)
    k = max(1, math.ceil(CONTINUATION_SHARE * max_iter))
    eta = (mu / mu0).pow(1.0 / k).clamp(max=ETA)
    return mu0, eta


def _apg(
    x: Tensor, lam: float, mu: Tensor, max_iter: int, tol: float, svd: SVD,
    continuation: bool = True,
) -> tuple[Tensor, Tensor, int]:
    """FISTA with per-matrix (absolute) relaxations ``mu`` ``(B,)``, with continuation."""
    step = 0.5  # 1 / Lipschitz constant (2) of the smooth part's gradient
    if continuation:
        current, eta = continuation_schedule(x, mu, max_iter)
    else:
        current, eta = mu, torch.ones_like(mu)
    low, sparse = torch.zeros_like(x), torch.zeros_like(x)
    y_low, y_sparse = low, sparse
    t = 1.0
    it = 0
    while it < max_iter:
        it += 1
        reached = not continuation or bool((current <= mu).all())
        tau_low = step * current  # (B,)
        tau_sparse = (step * lam * current).view(-1, 1, 1)
        # gradient step on both blocks: y - step * (y_low + y_sparse - x) = y + step * resid
        resid = x - y_low - y_sparse
        new_low = svt(torch.add(y_low, resid, alpha=step), tau_low, svd=svd)
        new_sparse = soft_threshold(torch.add(y_sparse, resid, alpha=step), tau_sparse)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        d_low, d_sparse = new_low - low, new_sparse - sparse
        y_low = torch.add(new_low, d_low, alpha=beta) if beta else new_low
        y_sparse = torch.add(new_sparse, d_sparse, alpha=beta) if beta else new_sparse
        low, sparse, t = new_low, new_sparse, t_next
        if not reached:
            current = torch.maximum(current * eta, mu)
        elif tol > 0 and it < max_iter:  # relative change of (L, S), per matrix
            change = _sq_norms(d_low) + _sq_norms(d_sparse)
            scale = (_sq_norms(low) + _sq_norms(sparse)).clamp_min(1e-24)
            if bool((change <= tol * tol * scale).all()):
                break
    return low, sparse, it


def _sq_norms(a: Tensor) -> Tensor:
    """Squared Frobenius norm of each matrix of a ``(B, m, n)`` batch, ``(B,)``."""
    return torch.linalg.vector_norm(a, dim=(-2, -1)).square()


def _admm(x: Tensor, lam: float, max_iter: int, tol: float, svd: SVD) -> tuple[Tensor, Tensor, int]:
    b, m, n = x.shape
    xnorm = x.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
    # Candès et al. (2011), section 5: a fixed penalty m n / (4 ||X||_1) per matrix
    pen = (m * n / (4.0 * x.flatten(1).abs().sum(1).clamp_min(1e-12))).view(b, 1, 1)
    dual = torch.zeros_like(x)
    low, sparse = torch.zeros_like(x), torch.zeros_like(x)
    it = 0
    while it < max_iter:
        it += 1
        low = svt(x - sparse + dual / pen, (1.0 / pen).view(b), svd=svd)
        sparse = soft_threshold(x - low + dual / pen, lam / pen)
        resid = x - low - sparse
        dual = dual + pen * resid
        if bool((resid.flatten(1).norm(dim=1) / xnorm <= tol).all()):
            break
    return low, sparse, it
