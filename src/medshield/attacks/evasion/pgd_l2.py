"""Projected gradient descent in L2 with a random start (Madry et al., ICLR 2018)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack
from medshield.attacks.registry import ATTACKS

__all__ = ["PGDL2"]

_TINY = 1e-10  # keeps a zero gradient or zero perturbation from dividing by zero


@ATTACKS.register("pgd-l2", aliases=("l2-pgd", "pgdl2"))
class PGDL2(EvasionAttack):
    r"""PGD (L2): normalised gradient steps projected on the L2 ``eps``-ball and the box.

    Madry et al., "Towards deep learning models resistant to adversarial attacks", ICLR 2018,
    with the L2 steepest-ascent step:

    .. math:: x^{t+1} = \Pi_{B_2(x, \epsilon) \cap [l, h]}
              \Big(x^t + \alpha\,\frac{\nabla_x J(x^t, y)}{\|\nabla_x J(x^t, y)\|_2}\Big)

    per example. The projection scales ``delta = x^t - x`` by ``min(1, eps / ||delta||)`` and
    then clamps ``x + delta`` into the box (which can only shrink the norm). The random start
    is uniform in the L2 ball (a Gaussian direction, radius ``eps * u**(1/d)``), clipped to the
    box. Targeted (``target=t``): descend the cross-entropy of ``t``.

    Threat model: white box at test time (gradients of the model's loss).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)``.
    eps
        L2 budget per example (over all of its ``C*H*W`` values).
    alpha
        Step length (L2) of each step.
    steps
        Number of steps.
    random_start
        Start from a uniform point of the L2 ball drawn from the seeded generator.
    bounds, seed
        See :class:`EvasionAttack`.

    Shapes: ``x`` ``(N, *shape)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, *shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x_adv = PGDL2(model, eps=1.0, alpha=0.2, steps=10)(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    """

    norm = "l2"
    uses_randomness = True

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 1.0,
        alpha: float = 0.2,
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
        n = x.shape[0]
        view = (n,) + (1,) * (x.dim() - 1)
        x_adv = x.clone()
        if self.random_start:
            gen = self.generator()
            direction = torch.randn(x.shape, generator=gen, dtype=x.dtype)
            d = direction[0].numel()
            radius = torch.rand(n, generator=gen, dtype=x.dtype) ** (1.0 / d) * self.eps
            scale = radius / direction.flatten(1).norm(dim=1).clamp_min(_TINY)
            x_adv = self.clip(x + (direction * scale.view(view)).to(x.device))
        low, high = self.bounds
        for _ in range(self.steps):
            grad = self.loss_grad(x_adv, y, target)
            grad_norm = grad.flatten(1).norm(dim=1) + _TINY
            x_adv = x_adv + self.alpha * (grad / grad_norm.view(view))
            delta = x_adv - x
            factor = (self.eps / delta.flatten(1).norm(dim=1).clamp_min(_TINY)).clamp_max_(1.0)
            x_adv = (x + delta * factor.view(view)).clamp_(low, high)
        return x_adv
