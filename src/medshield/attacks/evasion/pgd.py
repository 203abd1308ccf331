"""Projected gradient descent in L-inf with a random start (Madry et al., ICLR 2018)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack
from medshield.attacks.registry import ATTACKS

__all__ = ["PGD"]


@ATTACKS.register("pgd", aliases=("pgd-linf", "linf-pgd"))
class PGD(EvasionAttack):
    r"""PGD (L-inf): signed gradient steps projected on the ``eps``-ball and the box.

    Madry et al., "Towards deep learning models resistant to adversarial attacks", ICLR 2018,
    eq. 2.2:

    .. math:: x^{t+1} = \Pi_{B_\infty(x, \epsilon) \cap [l, h]}
              \big(x^t + \alpha\,\mathrm{sign}(\nabla_x J(\theta, x^t, y))\big)

    starting from :math:`x^0 = \mathrm{clip}(x + U(-\epsilon, \epsilon))` (``random_start``)
    or from ``x``. The projection is computed as torchattacks does
    (``delta = clamp(x_t - x, -eps, eps); x_t = clamp(x + delta, l, h)``), so from the same
    start the result is bit-identical to ``torchattacks.PGD``. Targeted (``target=t``):
    descend the cross-entropy of ``t``. All ``steps`` are run (no early stop).

    Threat model: white box at test time (gradients of the model's loss).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)``.
    eps
        L-inf budget.
    alpha
        Step size.
    steps
        Number of gradient steps.
    random_start
        Start from a uniform point of the ``eps``-ball (drawn from the attack's seeded
        generator) instead of ``x``.
    bounds, seed
        See :class:`EvasionAttack`.

    Shapes: ``x`` ``(N, *shape)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, *shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, seed=0)
    >>> x_adv = attack(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    """

    norm = "linf"
    uses_randomness = True

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
    ) -> None:
        if eps < 0 or alpha < 0 or steps < 0:
            raise ValueError(f"eps, alpha and steps must be >= 0; got {eps}, {alpha}, {steps}")
        super().__init__(
            model,
            bounds=bounds,
            seed=seed,
            eps=eps,
            alpha=alpha,
            steps=int(steps),
            random_start=random_start,
        )

    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        x_adv = x.clone()
        if self.random_start:
            noise = torch.rand(x.shape, generator=self.generator(), dtype=x.dtype)
            x_adv = self.clip(x_adv + (noise.to(x.device) * 2 - 1) * self.eps)
        return linf_iterate(self, x, x_adv, y, target, self.eps, self.alpha, self.steps)


def linf_iterate(
    attack: EvasionAttack,
    x: Tensor,
    x_adv: Tensor,
    y: Tensor,
    target: Tensor | None,
    eps: float,
    alpha: float,
    steps: int,
) -> Tensor:
    """``steps`` projected signed-gradient steps from ``x_adv`` (shared by PGD and BIM)."""
    low, high = attack.bounds
    for _ in range(steps):
        grad = attack.loss_grad(x_adv, y, target)
        x_adv = x_adv.add(grad.sign_(), alpha=alpha)
        delta = x_adv.sub_(x).clamp_(-eps, eps)
        x_adv = delta.add_(x).clamp_(low, high)
    return x_adv
