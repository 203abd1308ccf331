"""Fast gradient sign method (Goodfellow, Shlens and Szegedy, ICLR 2015)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack
from medshield.attacks.registry import ATTACKS

__all__ = ["FGSM"]


@ATTACKS.register("fgsm", aliases=("fast-gradient-sign",))
class FGSM(EvasionAttack):
    r"""FGSM: one step of size ``eps`` along the sign of the loss gradient (L-inf).

    Goodfellow et al., "Explaining and harnessing adversarial examples", ICLR 2015, eq. 6
    (eq. 1 of the robust-medical-imaging paper):

    .. math:: x' = \mathrm{clip}_{[l, h]}\big(x + \epsilon\,\mathrm{sign}(\nabla_x J(\theta, x, y))\big)

    Targeted (``target=t``): :math:`x' = \mathrm{clip}(x - \epsilon\,\mathrm{sign}(\nabla_x
    J(\theta, x, t)))`. ``J`` is the mean cross-entropy over the batch (as in torchattacks and
    ART, so the results are identical to theirs).

    Threat model: white box at test time (gradients of the model's loss).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)`` (see :class:`EvasionAttack` for binary models).
    eps
        L-inf budget: every input value moves by at most ``eps``.
    bounds, seed
        See :class:`EvasionAttack` (FGSM draws no random numbers).

    Shapes: ``x`` ``(N, *shape)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, *shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x_adv = FGSM(model, eps=8 / 255)(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    """

    norm = "linf"

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: float = 8 / 255,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
    ) -> None:
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        super().__init__(model, bounds=bounds, seed=seed, eps=eps)

    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        grad = self.loss_grad(x, y, target)
        return x.add(grad.sign_(), alpha=self.eps).clamp_(*self.bounds)
