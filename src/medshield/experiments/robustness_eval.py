"""Robust-accuracy measurements and the gradient-masking checks of the robustness experiment.

Threat model (``docs/threat-models.md``): a white-box evasion attacker at test time who
knows the architecture, the weights and the defence; images live in ``[0, 1]``. Every
function here attacks the model as deployed (in eval mode) and reports the accuracy on the
attacked inputs, so a number is an *upper bound* on the true robust accuracy: a stronger
attack can only lower it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medshield.attacks import CW, FGSM, PGD

__all__ = [
    "AttackSuite",
    "MarginPGD",
    "accuracy",
    "correct",
    "predictions",
    "fgsm_masks",
    "fgsm_curve",
    "pgd_masks",
    "worst_case",
    "noise_curve",
    "pgd_curve",
    "cw_l2_summary",
    "evaluate_variant",
    "masking_check",
    "MASKING_THRESHOLDS",
]


class MarginPGD(PGD):
    r"""PGD (L-inf) on the C&W margin loss: "C&W-L-inf" of robustness benchmarks.

    Ascends :math:`\max_{j \ne y} Z(x)_j - Z(x)_y` on the logits ``Z`` (Carlini and Wagner,
    S&P 2017, objective ``f_6``) instead of the cross-entropy, within the same L-inf ball
    and steps as :class:`~medshield.attacks.PGD`. The margin does not saturate with the
    softmax, so it still has useful gradients where a distilled (high-temperature) model's
    cross-entropy gradients vanish (Carlini and Wagner 2016). Untargeted only.
    """

    supports_targeted = False

    def loss_grad(self, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        x = x.detach().requires_grad_(True)
        z = self.logits(x)
        real = z.gather(1, y.view(-1, 1)).squeeze(1)
        other = z.scatter(1, y.view(-1, 1), -math.inf).amax(1)
        (grad,) = torch.autograd.grad((other - real).sum(), x)
        return grad


@dataclass(frozen=True)
class AttackSuite:
    """Which attacks, at which budgets and strengths, every model and defence faces.

    Attributes
    ----------
    paper_eps : the paper's FGSM budgets (Tables II-III)
    beyond_eps : larger L-inf budgets for FGSM, noise, PGD and margin-PGD
    pgd_steps : PGD steps (step size ``2.5 eps / steps``, random start; Madry et al.)
    cw_steps, cw_search, cw_lr, cw_c : C&W-L2 Adam steps, binary-search rounds, rate, first c
    l2_radii : L2 budgets at which the C&W-L2 robust accuracy is read off
    batch_size : examples per attack call
    """

    paper_eps: tuple[float, ...] = (0.001, 0.002, 0.003, 0.004, 0.005)
    beyond_eps: tuple[float, ...] = (0.005, 0.01, 0.03, 8 / 255)
    pgd_steps: int = 20
    cw_steps: int = 100
    cw_search: int = 5
    cw_lr: float = 0.01
    cw_c: float = 1.0
    l2_radii: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5)
    batch_size: int = 64

    @property
    def pgd_name(self) -> str:
        return f"PGD-{self.pgd_steps}"


def _batches(x: Tensor, y: Tensor, size: int) -> list[tuple[Tensor, Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def predictions(model: nn.Module, x: Tensor, device: torch.device, batch_size: int = 256) -> Tensor:
    """Predicted classes ``(N,)`` (CPU) of ``x`` ``(N, C, H, W)``, in eval mode, no gradients."""
    was = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                z = model(x[i : i + batch_size].to(device))
                z = z.unsqueeze(1) if z.dim() == 1 else z
                out.append((z.view(-1) > 0).long() if z.shape[1] == 1 else z.argmax(1))
        return torch.cat(out).cpu()
    finally:
        for m, flag in was:
            m.training = flag


def accuracy(model: nn.Module, x: Tensor, y: Tensor, device: torch.device) -> float:
    """Accuracy of ``model`` on ``(x, y)``."""
    return float((predictions(model, x, device) == y).float().mean()) if len(y) else math.nan


def correct(model: nn.Module, x: Tensor, y: Tensor, device: torch.device) -> Tensor:
    """Boolean ``(N,)``: the model classifies each example correctly."""
    return predictions(model, x, device) == y


def fgsm_masks(model: nn.Module, x: Tensor, y: Tensor, eps: tuple[float, ...],
               device: torch.device, batch_size: int = 64) -> list[Tensor]:
    """Per budget in ``eps``, which examples FGSM fails to fool, from one gradient each.

    FGSM's step direction does not depend on ``eps``: ``FGSM(eps=1)`` moves every pixel to
    the box edge along ``sign(grad)`` (or not at all where the gradient is 0 or the pixel is
    already at that edge), so ``sign(x_1 - x)`` is FGSM's direction and
    ``clip(x + e * sign(x_1 - x))`` equals ``FGSM(eps=e)(x, y)`` exactly.
    """
    sign = torch.cat([
        (FGSM(model, eps=1.0)(xb.to(device), yb.to(device)).cpu() - xb).sign()
        for xb, yb in _batches(x, y, batch_size)
    ])
    return [correct(model, (x + e * sign).clamp(0, 1), y, device) for e in eps]


def fgsm_curve(model: nn.Module, x: Tensor, y: Tensor, eps: tuple[float, ...],
               device: torch.device, batch_size: int = 64) -> list[float]:
    """FGSM accuracy at every budget in ``eps`` (see :func:`fgsm_masks`)."""
    return [_mean(m) for m in fgsm_masks(model, x, y, eps, device, batch_size)]


def _mean(mask: Tensor) -> float:
    return float(mask.float().mean()) if len(mask) else math.nan


def noise_curve(model: nn.Module, x: Tensor, y: Tensor, eps: tuple[float, ...],
                device: torch.device, seed: int) -> list[float]:
    """Accuracy under random sign noise ``x + e * s`` (``s`` uniform in ``{-1, 1}``): the
    baseline any gradient attack of the same L-inf budget must beat."""
    gen = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, x.shape, generator=gen).to(x.dtype) * 2 - 1
    return [accuracy(model, (x + e * sign).clamp(0, 1), y, device) for e in eps]


def pgd_masks(model: nn.Module, x: Tensor, y: Tensor, eps: tuple[float, ...], steps: int,
              device: torch.device, seed: int, *, margin: bool = False,
              batch_size: int = 64) -> list[Tensor]:
    """Per budget in ``eps``, which examples PGD (cross-entropy) or margin-PGD fails to fool.

    Step size ``2.5 * eps / steps`` with a uniform random start (Madry et al. 2018).
    """
    cls = MarginPGD if margin else PGD
    out = []
    for k, e in enumerate(eps):
        attack = cls(model, eps=e, alpha=2.5 * e / steps, steps=steps, random_start=True,
                     seed=seed + k)
        x_adv = torch.cat([attack(xb.to(device), yb.to(device)).cpu()
                           for xb, yb in _batches(x, y, batch_size)])
        out.append(correct(model, x_adv, y, device))
    return out


def pgd_curve(model: nn.Module, x: Tensor, y: Tensor, eps: tuple[float, ...], steps: int,
              device: torch.device, seed: int, *, margin: bool = False,
              batch_size: int = 64) -> list[float]:
    """PGD or margin-PGD accuracy at every budget in ``eps`` (see :func:`pgd_masks`)."""
    return [_mean(m) for m in pgd_masks(model, x, y, eps, steps, device, seed, margin=margin,
                                        batch_size=batch_size)]


def worst_case(clean: Tensor, eps: tuple[float, ...], *masks: list[Tensor]) -> list[float]:
    """Accuracy against the strongest attack per example, at every budget in ``eps``.

    An example counts as robust at ``e`` only if it is classified correctly and survives
    every attack at every budget ``e' <= e`` (an adversarial example within ``e'`` lies
    within ``e`` too), so the curve never rises with ``e`` even where one attack's does.
    """
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    alive = clean.clone()
    out = [math.nan] * len(eps)
    for i in order:
        for m in masks:
            alive &= m[i]
        out[i] = _mean(alive)
    return out


def cw_l2_summary(model: nn.Module, x: Tensor, y: Tensor, suite: AttackSuite,
                  device: torch.device) -> dict[str, Any]:
    """C&W-L2 (minimum-norm, no budget): success rate and distortion, robust accuracy at radii.

    ``success`` is over the correctly classified examples; ``robust@r`` counts an example
    as robust when it is classified correctly and C&W found no adversarial example within
    L2 distance ``r`` (an upper bound: C&W only approximates the minimum).
    """
    attack = CW(model, c=suite.cw_c, steps=suite.cw_steps, lr=suite.cw_lr,
                binary_search_steps=suite.cw_search)
    x_adv = torch.cat([attack(xb.to(device), yb.to(device)).cpu()
                       for xb, yb in _batches(x, y, suite.batch_size)])
    clean_ok = predictions(model, x, device) == y
    fooled = clean_ok & (predictions(model, x_adv, device) != y)
    l2 = (x_adv - x).flatten(1).norm(dim=1)
    n_ok = int(clean_ok.sum())
    res: dict[str, Any] = {
        "success": float(fooled.sum()) / n_ok if n_ok else math.nan,
        "median_l2": float(l2[fooled].median()) if bool(fooled.any()) else None,
    }
    for r in suite.l2_radii:
        res[f"robust@{r:g}"] = float((clean_ok & ~(fooled & (l2 <= r))).float().mean())
    return res


def evaluate_variant(model: nn.Module, x_paper: Tensor, y_paper: Tensor, x_beyond: Tensor,
                     y_beyond: Tensor, suite: AttackSuite, device: torch.device,
                     seed: int) -> dict[str, Any]:
    """Every measurement of one model or defended model (a JSON-ready dict).

    ``x_paper``/``y_paper`` (the paper's test set, or a subset) give the clean accuracy and
    the FGSM curve of Tables II-III; ``x_beyond``/``y_beyond`` (a subset) face noise, FGSM,
    PGD and margin-PGD at ``suite.beyond_eps`` and C&W-L2.
    """
    pred = predictions(model, x_beyond, device)
    clean = pred == y_beyond
    e = suite.beyond_eps
    fgsm = fgsm_masks(model, x_beyond, y_beyond, e, device, suite.batch_size)
    pgd = pgd_masks(model, x_beyond, y_beyond, e, suite.pgd_steps, device, seed,
                    batch_size=suite.batch_size)
    margin = pgd_masks(model, x_beyond, y_beyond, e, suite.pgd_steps, device, seed,
                       margin=True, batch_size=suite.batch_size)
    return {
        "clean": accuracy(model, x_paper, y_paper, device),
        "fgsm_paper": fgsm_curve(model, x_paper, y_paper, suite.paper_eps, device,
                                 suite.batch_size),
        "n_paper": len(y_paper),
        "n_beyond": len(y_beyond),
        "beyond": {
            "clean": _mean(clean),
            "noise": noise_curve(model, x_beyond, y_beyond, e, device, seed),
            "fgsm": [_mean(m) for m in fgsm],
            "pgd": [_mean(m) for m in pgd],
            "cw_linf": [_mean(m) for m in margin],
            "worst": worst_case(clean, e, fgsm, pgd, margin),
        },
        "cw_l2": cw_l2_summary(model, x_beyond, y_beyond, suite, device),
        "predicted_classes": np.bincount(pred.numpy(), minlength=2).tolist(),
    }


#: Thresholds of :func:`masking_check` (accuracy differences, absolute).
MASKING_THRESHOLDS: dict[str, float] = {
    "fgsm_vs_pgd": 0.15,  # FGSM leaves this much more accuracy than PGD at the same eps
    "flat": 0.02,  # accuracy at the largest eps within this of the smallest eps
    "noise": 0.01,  # FGSM within this of random noise...
    "noise_pgd": 0.05,  # ...while PGD gets at least this far below the noise
    "ce_vs_margin": 0.10,  # margin-PGD below CE-PGD by at least this
}


def masking_check(ev: dict[str, Any], eps: tuple[float, ...], pgd_name: str = "PGD"
                  ) -> tuple[bool, list[str], list[str]]:
    """Signs of gradient masking (Athalye, Carlini and Wagner, ICML 2018, section 3.1).

    On the ``beyond`` measurements of :func:`evaluate_variant` (one set of examples):

    1. single-step FGSM leaves much more accuracy than iterative PGD at the same budget;
    2. the accuracy does not fall as the budget grows: FGSM's while PGD's does, or PGD's
       itself while it is still above half the clean accuracy;
    3. FGSM is no stronger than random sign noise of the same budget, while PGD is;
    4. PGD on the cross-entropy is much weaker than PGD on the logit margin (saturated
       softmax: the signature of distillation, Carlini and Wagner 2016).

    Returns ``(masked, reasons, caveats)``; a caveat (for example a model that predicts a
    single class, which is trivially "robust") qualifies the numbers without being masking.
    """
    t = MASKING_THRESHOLDS
    b = ev["beyond"]
    fgsm, pgd, noise, margin = b["fgsm"], b["pgd"], b["noise"], b["cw_linf"]
    reasons: list[str] = []
    gaps = [(f - p, e, f, p) for f, p, e in zip(fgsm, pgd, eps, strict=True)]
    gap, e, f, p = max(gaps)
    if gap >= t["fgsm_vs_pgd"]:
        reasons.append(f"resists FGSM but not {pgd_name} (FGSM overstates robustness): at "
                       f"eps={e:.4g} FGSM leaves {f:.1%}, {pgd_name} {p:.1%}")
    if fgsm[-1] >= fgsm[0] - t["flat"] and pgd[-1] < pgd[0] - t["flat"]:
        reasons.append(f"FGSM accuracy does not fall as eps grows ({fgsm[0]:.1%} at "
                       f"{eps[0]:.4g}, {fgsm[-1]:.1%} at {eps[-1]:.4g}) while {pgd_name}'s does")
    for f, nz, p, e in zip(fgsm, noise, pgd, eps, strict=True):
        if f >= nz - t["noise"] and p <= nz - t["noise_pgd"]:
            reasons.append(f"FGSM no stronger than random noise at eps={e:.4g} ({f:.1%} vs "
                           f"{nz:.1%}) although {pgd_name} reaches {p:.1%}")
            break
    cm = [(p - m, e, p, m) for p, m, e in zip(pgd, margin, eps, strict=True)]
    d, e, p, m = max(cm)
    if d >= t["ce_vs_margin"]:
        reasons.append(f"cross-entropy gradients are uninformative: at eps={e:.4g} "
                       f"{pgd_name} leaves {p:.1%}, margin-PGD (C&W-Linf) {m:.1%}")
    caveats: list[str] = []
    counts = ev.get("predicted_classes", [])
    if counts and max(counts) == sum(counts):
        caveats.append("predicts a single class on every example: accuracy is the class "
                       "share and cannot fall under attack; not a robust model")
    if pgd[-1] >= pgd[0] - t["flat"] and pgd[-1] > b["clean"] / 2 and not caveats:
        reasons.append(f"{pgd_name} accuracy does not fall as eps grows ({pgd[0]:.1%} at "
                       f"{eps[0]:.4g}, {pgd[-1]:.1%} at {eps[-1]:.4g})")
    return bool(reasons), reasons, caveats
