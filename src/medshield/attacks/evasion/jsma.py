"""Jacobian-based saliency map attack: Papernot et al.'s targeted form and PGSL's untargeted one."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack, success
from medshield.attacks.registry import ATTACKS

__all__ = ["JSMA", "best_pairs", "best_pixels", "pair_candidates"]


@ATTACKS.register("jsma", aliases=("saliency-map",))
class JSMA(EvasionAttack):
    r"""JSMA: change the input values the saliency map ranks highest, ``theta`` at a time (L0).

    **Targeted** (``target=t``; Papernot et al., "The limitations of deep learning in
    adversarial settings", EuroS&P 2016, eqs. 8-10 and Algorithm 3): with the forward
    derivatives :math:`\alpha_i = \partial F_t / \partial x_i` and
    :math:`\beta_i = \sum_{j \ne t} \partial F_j / \partial x_i`, each iteration picks the pair
    of input values :math:`(p, q)` in the search domain that maximises

    .. math:: S(p, q) = -(\alpha_p + \alpha_q)(\beta_p + \beta_q)
              \quad\text{subject to}\quad \alpha_p + \alpha_q > 0,\; \beta_p + \beta_q < 0

    and adds ``theta`` to both (clipped to the box). For ``theta < 0`` the inequalities flip
    (Papernot's decreasing map). A value leaves the search domain when it reaches the box edge
    it is pushed to. The attack stops at the target, when no pair satisfies the conditions, or
    after ``floor(gamma * d / 2)`` iterations (so at most ``gamma * d`` of the ``d = C*H*W``
    values change).

    **Untargeted** (no ``target``; the PGSL paper, section IV-A, eq. 1): the conditions are
    inverted around the *true* class ``y``: :math:`\alpha_i = \partial F_y / \partial x_i < 0`
    and :math:`\beta_i = \sum_{y' \ne y} \partial F_{y'} / \partial x_i > 0`, with the same
    score :math:`-\alpha\beta` ("Map'"), so each step lowers the true class and raises the
    others; it stops as soon as the prediction leaves ``y``. Reading notes on the paper:

    * it writes the attacked image as :math:`\hat x = x + Map'`, adding the saliency values
      themselves to the image; taken literally this mixes units (products of derivatives
      added to intensities). We read it as the usual JSMA step: ``theta`` is added to the
      values that ``Map'`` selects, iterated as in Papernot's Algorithm 3 (pairs, as the
      cited JSMA; ``pairs=False`` uses the paper's per-value map directly);
    * it defines :math:`f` as the softmax probabilities. Softmax outputs sum to one, so
      :math:`\beta = -\alpha` exactly, the two conditions coincide and the map degenerates to
      :math:`\alpha^2`. We use the logits by default (``use_logits=True``, JSMA-Z, as
      cleverhans and Carlini-Wagner do), where the conditions are distinct;
      ``use_logits=False`` reproduces the paper's softmax literally (both forms). On the
      small MNIST CNN of the tests the softmax form (JSMA-F) is the stronger of the two.

    The pair search is exact but does not score all ``d^2`` pairs: a dominance argument
    (:func:`best_pairs`) leaves a few dozen candidate values per image, sorted in
    ``O(d log d)``, whose pairs are scored exhaustively (``O(d^2)`` only in the worst case,
    in blocks of at most ``chunk_elements`` scores). Everything runs vectorised over the
    batch.

    Threat model: white box at test time (Jacobian of the outputs). Norm: L0 (at most
    ``floor(gamma * d)`` input values change).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)``.
    theta
        Change applied to a selected value per iteration (``1.0`` saturates it, as in the
        paper; negative values decrease).
    gamma
        Largest fraction of the input values that may change, in ``(0, 1]``.
    use_logits
        Differentiate the logits (JSMA-Z) rather than the softmax probabilities (JSMA-F).
    pairs
        Search pairs of values (Papernot's Algorithm 3) rather than single values.
    chunk_elements
        Most pair scores computed at once (memory: about ``8 * chunk_elements`` bytes in
        float32; cache-sized blocks are fastest).
    bounds, seed
        See :class:`EvasionAttack` (JSMA draws no random numbers).

    Shapes: ``x`` ``(N, *shape)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, *shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> attack = JSMA(model, theta=1.0, gamma=0.5)
    >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
    >>> x_targeted = attack(x, y, target=torch.tensor([1, 1]))
    >>> x_untargeted = attack(x, y)
    """

    norm = "l0"

    def __init__(
        self,
        model: nn.Module,
        *,
        theta: float = 1.0,
        gamma: float = 0.1,
        use_logits: bool = True,
        pairs: bool = True,
        chunk_elements: int = 2**20,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
    ) -> None:
        if theta == 0 or not 0 < gamma <= 1:
            raise ValueError(
                f"need theta != 0 and 0 < gamma <= 1; got theta={theta}, gamma={gamma}"
            )
        super().__init__(
            model,
            bounds=bounds,
            seed=seed,
            theta=theta,
            gamma=gamma,
            use_logits=use_logits,
            pairs=pairs,
            chunk_elements=int(chunk_elements),
        )

    def max_changed(self, d: int) -> int:
        """The most input values an example of ``d`` values may have changed."""
        per_iter = 2 if self.pairs else 1
        return math.floor(self.gamma * d / per_iter + 1e-9) * per_iter

    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        low, high = self.bounds
        n, shape = x.shape[0], x.shape[1:]
        d = x[0].numel()
        targeted = target is not None
        cls = (target if targeted else y).view(n, 1)
        increase = self.theta > 0
        # s > 0: the class derivative alpha must be positive (targeted, increasing pixels)
        s = (1.0 if increase else -1.0) * (1.0 if targeted else -1.0)
        iters = self.max_changed(d) // (2 if self.pairs else 1)

        xf = x.flatten(1).clone()
        domain = xf < high if increase else xf > low
        active = torch.ones(n, dtype=torch.bool, device=x.device)
        for _ in range(iters):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            xa = xf[rows].view(-1, *shape).requires_grad_(True)
            logits = self.logits(xa)
            out = logits if self.use_logits else logits.softmax(1)
            done = success(logits, y[rows], target[rows] if targeted else None)
            c = cls[rows]
            (d_all,) = torch.autograd.grad(out.sum(), xa, retain_graph=True)
            (d_cls,) = torch.autograd.grad(out.gather(1, c).sum(), xa)
            a = d_cls.flatten(1) * s
            b = (d_all.flatten(1) - d_cls.flatten(1)) * s
            dom = domain[rows]
            if self.pairs:
                p, q, ok = best_pairs(a, b, dom, self.chunk_elements)
            else:
                p, ok = best_pixels(a, b, dom)
                q = p
            move = ok & ~done
            r, p, q = rows[move], p[move], q[move]
            for idx in (p, q) if self.pairs else (p,):
                new = (xf[r, idx] + self.theta).clamp(low, high)
                xf[r, idx] = new
                domain[r, idx] = new < high if increase else new > low
            active[rows[~move]] = False
        return xf.view_as(x)


def best_pairs(
    a: Tensor, b: Tensor, domain: Tensor, chunk_elements: int = 2**20
) -> tuple[Tensor, Tensor, Tensor]:
    """The pair maximising ``relu(a_p + a_q) * relu(-(b_p + b_q))`` per row, ``p != q``.

    ``a``, ``b``: ``(m, d)``; ``domain``: ``(m, d)`` bool (values still allowed). Returns
    ``p``, ``q`` (``(m,)``, ``p < q``: the first maximum of the full ``d x d`` score matrix in
    row-major order) and ``ok``: a pair with a positive score exists. The score equals
    ``-(a_p + a_q)(b_p + b_q)`` where ``a_p + a_q > 0`` and ``b_p + b_q < 0``, and is zero
    elsewhere.

    Exact, without scoring all ``d^2`` pairs: write ``n = -b``. If ``s`` beats ``q`` in both
    ``a`` and ``n`` (``a_s > a_q``, ``n_s >= n_q``), then ``S(p, s) > S(p, q)`` wherever
    ``S(p, q) > 0``; so no member of a best pair is beaten that way by two other values (one
    could be its partner). :func:`pair_candidates` keeps the values beaten by at most one
    (``O(d log d)``; typically a few dozen of several hundred), and the pairs among them are
    scored exhaustively, in index order, so that ties resolve exactly as in the full matrix.
    """
    m, d = a.shape
    nb = -b
    cand = pair_candidates(a, nb, domain)
    k = int(cand.sum(1).max()) if m else 0
    if k < 2:
        zero = torch.zeros(m, dtype=torch.long, device=a.device)
        return zero, zero, torch.zeros(m, dtype=torch.bool, device=a.device)
    # candidate indices in increasing order, padded with non-candidates (masked out)
    idx = torch.argsort((~cand).to(torch.uint8), dim=1, stable=True)[:, :k]
    pc, qc, ok = _pair_search(
        a.gather(1, idx), nb.gather(1, idx), cand.gather(1, idx), chunk_elements
    )
    return idx.gather(1, pc[:, None]).squeeze(1), idx.gather(1, qc[:, None]).squeeze(1), ok


def pair_candidates(a: Tensor, nb: Tensor, domain: Tensor) -> Tensor:
    """``(m, d)`` bool: domain values ``q`` with fewer than two others ``s`` such that
    ``a_s > a_q`` and ``nb_s >= nb_q`` (see :func:`best_pairs`).

    Sorted by ``a`` (descending), the test is "the second largest ``nb`` among the values
    with a strictly larger ``a`` is below ``nb_q``"; running maxima give it in ``O(d)``:
    with ``P_j`` the largest ``nb`` before position ``j``, the second largest before ``i`` is
    ``max_{j < i} min(nb_j, P_j)``.
    """
    m = a.shape[0]
    inf = torch.tensor(torch.inf, dtype=a.dtype, device=a.device)
    a_s, order = torch.where(domain, a, -inf).sort(dim=1, descending=True)
    nb_s = torch.where(domain, nb, -inf).gather(1, order)
    lead = torch.full((m, 1), -torch.inf, dtype=a.dtype, device=a.device)
    before = torch.cat([lead, nb_s.cummax(1).values[:, :-1]], dim=1)  # P_j
    second = torch.minimum(nb_s, before).cummax(1).values
    second = torch.cat([lead, second[:, :-1]], dim=1)  # second largest nb before position i
    # only values with a strictly larger a: read at the first position of i's tie group
    neg = (-a_s).contiguous()
    first = torch.searchsorted(neg, neg, right=False)
    keep = second.gather(1, first) < nb_s
    return torch.zeros_like(domain).scatter_(1, order, keep) & domain


def _pair_search(
    a: Tensor, nb: Tensor, domain: Tensor, chunk_elements: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Exhaustive :func:`best_pairs` over all pairs (blocks of the upper triangle)."""
    m, d = a.shape
    # a value outside the domain gets an ``a`` so negative that every pair holding it scores 0
    bump = 2 * torch.where(domain, a, torch.zeros_like(a)).abs().amax(1, keepdim=True) + 1
    a = torch.where(domain, a, -bump)
    nb = torch.where(domain, nb, torch.zeros_like(nb))
    per_block = max(1, chunk_elements // (m * d))
    best = torch.zeros(m, dtype=a.dtype, device=a.device)
    p = torch.zeros(m, dtype=torch.long, device=a.device)
    q = torch.zeros(m, dtype=torch.long, device=a.device)
    arange = torch.arange(m, device=a.device)
    for s in range(0, d - 1, per_block):
        e = min(d, s + per_block)
        score = (a[:, s:e, None] + a[:, None, s:]).clamp_min_(0)
        score.mul_((nb[:, s:e, None] + nb[:, None, s:]).clamp_min_(0))
        score.diagonal(dim1=1, dim2=2).zero_()  # the pairs (p, p), p in [s, e)
        # first maximum in row-major order: the first row holding the block's maximum, then
        # the first column of that row (amax, then small max/argmax: a max-with-index over
        # the whole block is several times slower on CPU)
        val, row = score.amax(2).max(1)
        col = score[arange, row].argmax(1)
        better = val > best  # strict: an earlier block wins a tie, as in row-major order
        best = torch.where(better, val, best)
        p = torch.where(better, s + row, p)
        q = torch.where(better, s + col, q)
    return p, q, best > 0


def best_pixels(a: Tensor, b: Tensor, domain: Tensor) -> tuple[Tensor, Tensor]:
    """The single value maximising ``relu(a_p) * relu(-b_p)`` per row, and whether it is > 0."""
    score = a.clamp_min(0) * (-b).clamp_min(0)
    score = torch.where(domain, score, torch.zeros_like(score))
    best, p = score.max(1)
    return p, best > 0
