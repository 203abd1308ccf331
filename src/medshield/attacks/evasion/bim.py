"""Basic iterative method (Kurakin, Goodfellow and Bengio, ICLR 2017 workshop)."""

from __future__ import annotations

import math

import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack
from medshield.attacks.evasion.pgd import linf_iterate
from medshield.attacks.registry import ATTACKS

__all__ = ["BIM"]


@ATTACKS.register("bim", aliases=("i-fgsm", "ifgsm"))
class BIM(EvasionAttack):
    r"""BIM (I-FGSM): iterated FGSM steps clipped to the ``eps``-ball around ``x`` (L-inf).

    Kurakin et al., "Adversarial examples in the physical world", ICLR 2017 workshop, eq. in
    section 2.2:

    .. math:: x'_0 = x, \quad x'_{n+1} = \mathrm{Clip}_{x, \epsilon}
              \big\{x'_n + \alpha\,\mathrm{sign}(\nabla_x J(x'_n, y))\big\}

    i.e. PGD without a random start. With ``steps=None`` the paper's rule
    ``floor(min(eps*255 + 4, 1.25*eps*255))`` (eps on the 0-255 scale) picks the number of steps.
    Targeted (``target=t``): the paper's iterative least-likely-class method with a chosen
    class: descend the cross-entropy of ``t``.

    Threat model: white box at test time (gradients of the model's loss).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)``.
    eps
        L-inf budget.
    alpha
        Step size (the paper: 1/255).
    steps
        Number of steps; ``None`` for the paper's rule (at least 1).
    bounds, seed
        See :class:`EvasionAttack` (BIM draws no random numbers).

    Shapes: ``x`` ``(N, *shape)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, *shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x_adv = BIM(model, eps=4 / 255)(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    """

    norm = "linf"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 8 / 255,
        alpha: float = 1 / 255,
        steps: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
    ) -> None:
        if steps is None:
            steps = max(1, math.floor(min(eps * 255 + 4, 1.25 * eps * 255) + 1e-9))
        if eps < 0 or alpha < 0 or steps < 0:
            raise ValueError(f"eps, alpha and steps must be >= 0; got {eps}, {alpha}, {steps}")
        super().__init__(model, bounds=bounds, seed=seed, eps=eps, alpha=alpha, steps=int(steps))

    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        return linf_iterate(self, x, x.clone(), y, target, self.eps, self.alpha, self.steps)
