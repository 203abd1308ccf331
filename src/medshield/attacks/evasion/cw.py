"""Carlini-Wagner L2 attack with a binary search over c (Carlini and Wagner, S&P 2017)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion.base import EvasionAttack
from medshield.attacks.registry import ATTACKS

__all__ = ["CW"]

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_TANH_SHRINK = 1 - 1e-6  # Carlini's 0.999999: keeps atanh finite at the box edges
_NO_UPPER = 1e10


@ATTACKS.register("cw", aliases=("cw-l2", "carlini-wagner"))
class CW(EvasionAttack):
    r"""C&W L2: minimise ``||x' - x||_2^2 + c * f(x')`` in tanh space with Adam.

    Carlini and Wagner, "Towards evaluating the robustness of neural networks", IEEE S&P 2017,
    section V-A. The change of variables ``x' = l + (h - l) * (tanh(w) + 1) / 2`` keeps
    ``x'`` in the box; ``w`` starts at ``atanh`` of ``x`` (shrunk by ``1 - 1e-6`` as in the
    authors' code, so that pixels at the box edges can still move; torchattacks' CW omits the
    shrink and cannot move them) and is optimised by Adam for ``steps`` steps. With logits
    ``Z`` the objective is (eq. 6 of section V-A)

    .. math:: f(x') = \max\big(Z(x')_y - \max_{j \ne y} Z(x')_j,\; -\kappa\big)
              \quad\text{(untargeted)},\qquad
              f(x') = \max\big(\max_{j \ne t} Z(x')_j - Z(x')_t,\; -\kappa\big)
              \quad\text{(targeted)}.

    An example counts as adversarial when some class beats ``y`` by more than ``kappa``
    (untargeted) or ``t`` beats every other class by more than ``kappa`` (targeted); the
    smallest-L2 adversarial example seen over all steps is returned, ``x`` itself where none
    was found. ``binary_search_steps`` outer rounds search ``c`` per example as the authors
    do: after a success ``c`` moves halfway down towards the largest failing ``c``, after a
    failure halfway up towards the smallest successful one (times 10 while none succeeded).
    ``w`` and Adam restart at every round. With ``abort_early`` a round stops when the batch
    loss has not fallen by 0.01 % over ``steps // 10`` steps.

    Threat model: white box at test time (gradients of the logits). Norm: L2 (minimised,
    no fixed budget).

    Parameters
    ----------
    model
        Classifier returning logits ``(N, K)`` (not softmax probabilities).
    c
        Initial trade-off constant (per example, then searched).
    kappa
        Confidence margin.
    steps
        Adam steps per binary-search round.
    lr
        Adam learning rate.
    binary_search_steps
        Rounds of the search over ``c``; ``1`` runs a single fixed ``c`` (torchattacks' CW).
    abort_early
        Stop a round early when the loss stalls.
    bounds, seed
        See :class:`EvasionAttack` (C&W draws no random numbers).

    Shapes: ``x`` ``(N, *shape)`` in ``bounds``, ``y`` ``(N,)`` -> ``(N, *shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> attack = CW(model, c=1.0, steps=50, binary_search_steps=3)
    >>> x_adv = attack(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]))
    """

    norm = "l2"

    def __init__(
        self,
        model: nn.Module,
        *,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_search_steps: int = 5,
        abort_early: bool = True,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
    ) -> None:
        if c <= 0 or lr <= 0 or kappa < 0 or steps < 0 or binary_search_steps < 1:
            raise ValueError(
                "need c > 0, lr > 0, kappa >= 0, steps >= 0, binary_search_steps >= 1; got "
                f"c={c}, lr={lr}, kappa={kappa}, steps={steps}, "
                f"binary_search_steps={binary_search_steps}"
            )
        super().__init__(
            model,
            bounds=bounds,
            seed=seed,
            c=c,
            kappa=kappa,
            steps=int(steps),
            lr=lr,
            binary_search_steps=int(binary_search_steps),
            abort_early=abort_early,
        )

    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        low, high = self.bounds
        half = (high - low) / 2
        n = x.shape[0]
        view = (n,) + (1,) * (x.dim() - 1)
        labels = (target if target is not None else y).view(n, 1)
        sign = 1.0 if target is not None else -1.0  # margin > kappa means success
        w0 = torch.atanh(((x - low) / half - 1).clamp(-1, 1) * _TANH_SHRINK)

        const = torch.full((n,), float(self.c), dtype=x.dtype, device=x.device)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, _NO_UPPER)
        best_l2 = torch.full_like(const, math.inf)
        best_adv = x.clone()
        beta1, beta2 = _ADAM_BETAS
        check_every = max(self.steps // 10, 1)

        for _ in range(self.binary_search_steps):
            w = w0.clone()
            m = torch.zeros_like(w)
            v = torch.zeros_like(w)
            found = torch.zeros(n, dtype=torch.bool, device=x.device)
            prev = math.inf
            for step in range(self.steps):
                w.requires_grad_(True)
                x_adv = (torch.tanh(w) + 1) * half + low
                l2 = (x_adv - x).square().flatten(1).sum(1)
                z = self.logits(x_adv)
                real = z.gather(1, labels).squeeze(1)
                other = z.scatter(1, labels, -math.inf).amax(1)
                margin = sign * (real - other)  # the amount by which the attack succeeds
                loss_each = l2 + const * (-margin).clamp_min(-self.kappa)
                loss = loss_each.sum()
                (grad,) = torch.autograd.grad(loss, w)
                w = w.detach()
                with torch.no_grad():
                    ok = margin > self.kappa
                    better = ok & (l2 < best_l2)
                    best_l2 = torch.where(better, l2, best_l2)
                    best_adv = torch.where(better.view(view), x_adv, best_adv)
                    found |= ok
                    # Adam, written out (torch.optim.Adam's update, without its overhead)
                    t = step + 1
                    m.mul_(beta1).add_(grad, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denom = (v.sqrt() / math.sqrt(1 - beta2**t)).add_(_ADAM_EPS)
                    w.addcdiv_(m, denom, value=-self.lr / (1 - beta1**t))
                if self.abort_early and step % check_every == 0:
                    current = float(loss.detach())
                    if current > prev * 0.9999:
                        break
                    prev = current
            # binary search over c, per example
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(upper < _NO_UPPER / 10, (lower + upper) / 2, const * 10)
        return best_adv.detach()
