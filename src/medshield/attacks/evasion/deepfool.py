"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard, CVPR 2016), multi-class, batched."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack
from medshield.attacks.registry import ATTACKS

__all__ = ["DeepFool"]

_TINY = 1e-12


@ATTACKS.register("deepfool")
class DeepFool(EvasionAttack):
    r"""DeepFool: step to the nearest linearised decision boundary until the label flips (L2).

    Moosavi-Dezfooli et al., "DeepFool: a simple and accurate method to fool deep neural
    networks", CVPR 2016, Algorithm 2 (multi-class). At iterate :math:`x_i`, with
    :math:`f'_k = Z_k(x_i) - Z_y(x_i)` and :math:`w'_k = \nabla Z_k(x_i) - \nabla Z_y(x_i)`
    over the candidate classes :math:`k`,

    .. math:: \hat l = \arg\min_k \frac{|f'_k|}{\|w'_k\|_2}, \qquad
              r_i = \Big(\frac{|f'_{\hat l}|}{\|w'_{\hat l}\|_2} + 10^{-4}\Big)
              \frac{w'_{\hat l}}{\|w'_{\hat l}\|_2},

    and :math:`x_{i+1} = \mathrm{clip}(x + (1 + \text{overshoot}) \sum_{j \le i} r_j)`, as in
    the authors' code (the ``1e-4`` and the overshoot push the point just past the boundary).
    ``y`` is the class to leave (the true label; the authors use the predicted one, the same
    for correctly classified inputs). The candidates are the ``candidates`` classes other than
    ``y`` with the largest clean logits (the authors' ``num_classes=10``). Iteration stops per
    example when the prediction leaves ``y`` or after ``steps``; examples already misclassified
    are returned unchanged. The candidate gradients come from one batched backward pass
    (``is_grads_batched``), all examples together.

    Threat model: white box at test time (gradients of the logits). Untargeted only. Norm: L2
    (minimised, no fixed budget).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)``.
    steps
        Largest number of iterations (the authors' ``max_iter=50``).
    overshoot
        Relative overshoot of the accumulated perturbation (``0.02``).
    candidates
        How many other classes are examined (``K - 1`` when fewer).
    bounds, seed
        See :class:`EvasionAttack` (DeepFool draws no random numbers).

    Shapes: ``x`` ``(N, *shape)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, *shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x_adv = DeepFool(model, steps=50)(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    """

    norm = "l2"
    supports_targeted = False

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 50,
        overshoot: float = 0.02,
        candidates: int = 10,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
    ) -> None:
        if steps < 0 or overshoot < 0 or candidates < 1:
            raise ValueError(
                f"need steps >= 0, overshoot >= 0, candidates >= 1; got {steps}, {overshoot}, "
                f"{candidates}"
            )
        super().__init__(
            model,
            bounds=bounds,
            seed=seed,
            steps=int(steps),
            overshoot=overshoot,
            candidates=int(candidates),
        )

    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        n = x.shape[0]
        with torch.no_grad():
            z0 = self.logits(x)
        k = min(self.candidates, z0.shape[1] - 1)
        others = z0.scatter(1, y.view(n, 1), -torch.inf)
        cand = others.topk(k, dim=1).indices  # (n, k) classes to cross into
        eye = torch.eye(k, dtype=x.dtype, device=x.device)

        x_adv = x.clone()
        r_tot = torch.zeros_like(x)
        active = torch.ones(n, dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            rows = active.nonzero().squeeze(1)
            if rows.numel() == 0:
                break
            xa = x_adv[rows].requires_grad_(True)
            z = self.logits(xa)
            yr = y[rows].view(-1, 1)
            still = z.argmax(1) == yr.squeeze(1)
            f = z.gather(1, cand[rows]) - z.gather(1, yr)  # (m, k), negative before crossing
            w = _batched_grads(f, xa, eye).flatten(2)  # (k, m, d)
            w_norm = w.norm(dim=2).clamp_min_(_TINY)  # (k, m)
            dist = f.detach().abs().T / w_norm  # (k, m)
            best = dist.argmin(0)  # (m,)
            m = rows.numel()
            ar = torch.arange(m, device=x.device)
            w_best = w[best, ar]  # (m, d)
            coef = (dist[best, ar] + 1e-4) / w_norm[best, ar]
            r = (coef.unsqueeze(1) * w_best).view_as(xa)
            keep = still.view(-1, *([1] * (x.dim() - 1)))
            r_tot[rows] += torch.where(keep, r, torch.zeros_like(r))
            x_adv[rows] = torch.where(
                keep, self.clip(x[rows] + (1 + self.overshoot) * r_tot[rows]), xa.detach()
            )
            active[rows[~still]] = False
        return x_adv


def _batched_grads(f: Tensor, x: Tensor, eye: Tensor) -> Tensor:
    """``(k, *x.shape)``: the gradient of ``f[:, j].sum()`` w.r.t. ``x`` for every column ``j``."""
    k = f.shape[1]
    grad_outputs = eye.unsqueeze(1).expand(k, f.shape[0], k)
    try:
        (grads,) = torch.autograd.grad(f, x, grad_outputs, retain_graph=True, is_grads_batched=True)
        return grads
    except RuntimeError:  # a layer without a batching rule: one backward per column
        cols = [torch.autograd.grad(f[:, j].sum(), x, retain_graph=j < k - 1)[0] for j in range(k)]
        return torch.stack(cols)
