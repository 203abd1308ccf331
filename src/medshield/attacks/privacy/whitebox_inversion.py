"""White-box model inversion of cut-layer activations (He, Zhang and Lee, ACSAC 2019: rMLE).

The adversary sees the activations :math:`a = f(x)` a device sends and *knows the device half*
:math:`f` (its architecture and weights). It solves, per image, the regularised maximum
likelihood problem

.. math:: \\hat x = \\arg\\min_{x' \\in [0, 1]^d} \\;
          \\frac{\\|f(x') - a\\|_2^2}{\\|a\\|_2^2} + \\alpha\\, \\mathrm{TV}(x')

by Adam from a grey image, the box kept by projection after every step, the step size
cosine-annealed. No auxiliary data are needed.

Who has this knowledge: in vanilla split learning the device half's weights pass from one
device to the next between turns; in :mod:`medshield.split` they are relayed *by the
server* (as in Gupta and Raskar's centralised mode), so the server PGSL defends against
holds them. A defence that randomises the device's output (activation noise) still leaves the
weights known; the attacker then inverts the noisy activations with the noise-free model.

Threat model: :data:`WHITE_BOX_MIA`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from medshield.attacks.privacy.inverting_gradients import total_variation
from medshield.attacks.privacy.result import InversionResult
from medshield.attacks.privacy.threat import (
    Knowledge,
    Observation,
    ThreatModel,
    model_device,
)
from medshield.attacks.registry import ATTACKS
from medshield.models.base import eval_mode

__all__ = ["WHITE_BOX_MIA", "WhiteBoxInversion"]

WHITE_BOX_MIA = ThreatModel(
    name="white-box-mia",
    adversary="the split-learning server, which relays the device half's weights between "
              "devices' turns (or anyone holding those weights)",
    observes=frozenset({"activations"}),
    knows=frozenset({"model", "input_shape"}),
    requires=frozenset({"activations", "model", "input_shape"}),
    reference="He, Zhang and Lee, ACSAC 2019 (white-box rMLE)",
)


@ATTACKS.register("whitebox-inversion", aliases=("rmle", "white-box-mia"))
class WhiteBoxInversion:
    """Invert activations through the known device half by optimisation (rMLE).

    Parameters
    ----------
    iterations
        Adam steps per chunk of images.
    lr
        Initial step (cosine-annealed to zero).
    tv
        Weight :math:`\\alpha` of the total-variation prior (0 disables it).
    batch_size
        Images inverted together (their problems are independent; batching only saves time).
    image_of
        Maps a device input ``(N, *input_shape)`` to the ``(N, C, H, W)`` image the prior is
        measured on (default: the input itself; PGSL's layout: its up-sampling).
    seed
        Unused by the deterministic grey start; kept for a uniform attack signature.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from medshield.attacks.privacy import Knowledge, Observation, WhiteBoxInversion
    >>> f = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    >>> x = torch.rand(2, 1, 6, 6)
    >>> res = WhiteBoxInversion(iterations=30).run(
    ...     Observation(activations=f(x).detach()), Knowledge(model=f, input_shape=(1, 6, 6)))
    >>> res.reconstruction.shape
    torch.Size([2, 1, 6, 6])
    """

    threat_model = WHITE_BOX_MIA

    def __init__(self, *, iterations: int = 300, lr: float = 0.05, tv: float = 1e-3,
                 batch_size: int = 256, image_of: Callable[[Tensor], Tensor] | None = None,
                 seed: int = 0) -> None:
        if iterations < 1 or batch_size < 1:
            raise ValueError("iterations and batch_size must be positive integers")
        if lr <= 0 or tv < 0:
            raise ValueError(f"need lr > 0 and tv >= 0, got lr={lr}, tv={tv}")
        self.iterations = iterations
        self.lr = lr
        self.tv = tv
        self.batch_size = batch_size
        self.image_of = image_of
        self.seed = seed

    def __repr__(self) -> str:
        return (f"WhiteBoxInversion(iterations={self.iterations}, lr={self.lr}, tv={self.tv}, "
                f"batch_size={self.batch_size})")

    def run(self, observation: Observation, knowledge: Knowledge) -> InversionResult:
        """Reconstruct the device inputs behind ``observation.activations``."""
        self.threat_model.check(observation, knowledge)
        assert observation.activations is not None and knowledge.model is not None
        assert knowledge.input_shape is not None
        model = knowledge.model
        params = [(p, p.requires_grad) for p in model.parameters()]
        dev = model_device(model)
        acts = observation.activations
        parts, residuals = [], []
        with eval_mode(model):
            try:
                for p, _ in params:  # gradients w.r.t. the input only
                    p.requires_grad_(False)
                for i in range(0, len(acts), self.batch_size):
                    a = acts[i : i + self.batch_size].to(dev)
                    x, res = self._invert(model, a, tuple(knowledge.input_shape))
                    parts.append(x.cpu())
                    residuals.append(res.cpu())
            finally:
                for p, flag in params:
                    p.requires_grad_(flag)
        residual = torch.cat(residuals)
        return InversionResult(
            reconstruction=torch.cat(parts), labels=None,
            info={"relative_residual": float(residual.mean()), "iterations": self.iterations,
                  "threat_model": self.threat_model.name},
        )

    def _invert(self, model: nn.Module, a: Tensor, shape: tuple[int, ...]
                ) -> tuple[Tensor, Tensor]:
        x = torch.full((len(a), *shape), 0.5, device=a.device, dtype=a.dtype,
                       requires_grad=True)
        opt = torch.optim.Adam([x], lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.iterations)
        norms = a.flatten(1).pow(2).sum(1).clamp_min(1e-12)
        for _ in range(self.iterations):
            opt.zero_grad()
            fit = ((model(x) - a).flatten(1).pow(2).sum(1) / norms).sum()
            objective = fit
            if self.tv:
                image = x if self.image_of is None else self.image_of(x)
                # total_variation is a batch mean: scale by N so each image's weight is tv
                objective = objective + self.tv * len(a) * total_variation(image)
            objective.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        with torch.no_grad():
            residual = ((model(x) - a).flatten(1).pow(2).sum(1) / norms).sqrt()
        return x.detach(), residual

