"""Inverting Gradients (Geiping, Bauermeister, Dröge and Moeller, NeurIPS 2020).

The gradient-leakage attack that works where DLG stalls: on trained ReLU networks with
BatchNorm, such as PGSL's 7-conv CNN. It changes three things in DLG's recipe:

* the *cosine* distance between the dummy's gradient and the observed one, over all observed
  parameters at once (the gradient's direction carries the image; its magnitude mostly
  carries how wrong the model is, which DLG's squared distance lets dominate),

  .. math:: 1 - \\frac{\\langle \\nabla_W \\ell(F(x'), y), \\nabla W \\rangle}
                      {\\|\\nabla_W \\ell(F(x'), y)\\| \\, \\|\\nabla W\\|} ;

* a total-variation prior :math:`\\alpha\\,\\mathrm{TV}(x')` (natural images are smooth);
* Adam on the *signed* gradient of that objective, with the step cut tenfold at 3/8, 5/8 and
  7/8 of the iterations, and the dummy projected onto the box ``[0, 1]`` after every step.

The labels, if not observed, are read off the last linear layer's gradient as iDLG does
(exact for a batch of one).

Threat model: :data:`~medshield.attacks.privacy.threat.GRADIENT_LEAKAGE` (or
``GRADIENT_LEAKAGE_WITH_LABELS`` when the labels are observed): the adversary sees one
batch's parameter gradients and knows the model at that step. In split learning this is an
upper bound on what the server sees (it never sees the device half's gradients); the PGSL
experiments use it as the critic's strongest gradient attacker beside the paper's DLG/iDLG.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.attacks.privacy.dlg import GradientInversion
from medshield.attacks.privacy.idlg import last_linear_weight, recover_labels
from medshield.attacks.privacy.result import InversionResult
from medshield.attacks.privacy.threat import (
    GRADIENT_LEAKAGE,
    GRADIENT_LEAKAGE_WITH_LABELS,
    Knowledge,
    Observation,
    ThreatModelError,
    model_device,
)
from medshield.attacks.registry import ATTACKS
from medshield.models.base import eval_mode

__all__ = ["InvertingGradients", "cosine_gradient_distance", "total_variation"]


def cosine_gradient_distance(model: nn.Module, x: Tensor, labels: Tensor,
                             observed: dict[str, Tensor]) -> Tensor:
    """``1 - cos`` between the gradient at ``(x, labels)`` and ``observed``, all parameters
    flattened into one vector; differentiable w.r.t. ``x`` (a double backward)."""
    named = dict(model.named_parameters())
    params = [named[name] for name in observed]
    loss = F.cross_entropy(model(x), labels)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * observed[n]).sum() for n, g in zip(observed, grads, strict=True))
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))  # type: ignore[arg-type]
    obs_norm = math.sqrt(sum(float(o.pow(2).sum()) for o in observed.values()))
    return 1.0 - dot / (norm * obs_norm).clamp_min(1e-30)  # type: ignore[operator]


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation of ``(N, C, H, W)``: the mean absolute difference of
    vertically and of horizontally neighbouring pixels, summed."""
    if x.dim() != 4:
        raise ValueError(f"total_variation expects (N, C, H, W), got shape {tuple(x.shape)}")
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + \
        (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


@ATTACKS.register("inverting-gradients", aliases=("ig", "geiping"))
class InvertingGradients(GradientInversion):
    """Inverting Gradients: cosine gradient matching with a total-variation prior.

    Parameters
    ----------
    batch_size
        Images in the attacked batch.
    iterations
        Adam steps (the step size is cut tenfold at 3/8, 5/8 and 7/8 of them).
    lr
        Adam's initial step (on the signed gradient, so in units of pixel values).
    tv
        Weight :math:`\\alpha` of the total-variation prior (0 disables it).
    restarts
        Random restarts; the one with the smallest cosine distance is kept.
    seed
        Seed of the dummy's initialisation (``0.5 + 0.1 N(0, 1)``, clipped to ``[0, 1]``).
    image_of
        Maps the dummy input ``(N, *input_shape)`` to the ``(N, C, H, W)`` image the prior is
        measured on (default: the input itself). For an input layout that rearranges the
        image, such as PGSL's reversible down-sampling, pass its inverse (the layout is part
        of the public architecture, so the threat model is unchanged).

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from medshield.attacks.privacy import InvertingGradients, Knowledge, Observation
    >>> from medshield.attacks.privacy import observe_gradients
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(4 * 8 * 8, 3))
    >>> x, y = torch.rand(1, 1, 8, 8), torch.tensor([2])
    >>> obs = Observation(gradients=observe_gradients(model, x, y))
    >>> res = InvertingGradients(iterations=20).run(obs, Knowledge(model=model,
    ...                                                            input_shape=(1, 8, 8)))
    >>> res.reconstruction.shape, res.labels
    (torch.Size([1, 1, 8, 8]), tensor([2]))
    """

    threat_model = GRADIENT_LEAKAGE

    def __init__(self, *, batch_size: int = 1, iterations: int = 300, lr: float = 0.1,
                 tv: float = 1e-2, restarts: int = 1, seed: int = 0,
                 image_of: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(batch_size=batch_size, iterations=iterations, optimizer="adam", lr=lr,
                         restarts=restarts, clamp=True, seed=seed)
        if tv < 0:
            raise ValueError(f"the total-variation weight tv must be >= 0, got {tv}")
        self.tv = tv
        self.image_of = image_of

    def __repr__(self) -> str:
        return (f"InvertingGradients(batch_size={self.batch_size}, iterations="
                f"{self.iterations}, lr={self.lr}, tv={self.tv}, restarts={self.restarts}, "
                f"seed={self.seed})")

    def run(self, observation: Observation, knowledge: Knowledge) -> InversionResult:
        """Reconstruct the batch behind ``observation.gradients`` (labels too, if not given)."""
        model, shape, grads = self._checked(observation, knowledge)
        if observation.labels is not None:
            labels = observation.labels.to(model_device(model))
            threat = GRADIENT_LEAKAGE_WITH_LABELS.name
        else:
            try:
                name = last_linear_weight(model, among=grads)
            except ValueError:
                raise ThreatModelError(
                    "without observed labels, Inverting Gradients reads them off the last "
                    "linear layer's gradient, which is not among the observed gradients; "
                    "observe the whole model, or pass Observation.labels"
                ) from None
            labels = recover_labels(grads[name], self.batch_size)
            threat = GRADIENT_LEAKAGE.name
        if len(labels) != self.batch_size:
            raise ValueError(f"got {len(labels)} labels for batch_size={self.batch_size}")
        gen = torch.Generator().manual_seed(self.seed)
        dev = model_device(model)
        best: tuple[float, Tensor] | None = None
        with eval_mode(model):
            for _ in range(self.restarts):
                x = (0.5 + 0.1 * torch.randn(self.batch_size, *shape, generator=gen)).clamp(0, 1)
                x = x.to(dev).requires_grad_(True)
                value = self._descend(model, x, labels, grads)
                if best is None or value < best[0]:
                    best = (value, x.detach())
        assert best is not None
        return InversionResult(
            reconstruction=best[1].clamp(0, 1).cpu(), labels=labels.cpu(),
            info={"cosine_distance": best[0], "restarts": self.restarts,
                  "threat_model": threat},
        )

    def _descend(self, model: nn.Module, x: Tensor, labels: Tensor,
                 grads: dict[str, Tensor]) -> float:
        opt = torch.optim.Adam([x], lr=self.lr)
        steps = [math.ceil(self.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=steps, gamma=0.1)
        for _ in range(self.iterations):
            opt.zero_grad()
            objective = cosine_gradient_distance(model, x, labels, grads)
            if self.tv:
                image = x if self.image_of is None else self.image_of(x)
                objective = objective + self.tv * total_variation(image)
            objective.backward()
            assert x.grad is not None
            x.grad.sign_()
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        value = cosine_gradient_distance(model, x, labels, grads).detach()
        return float(value) if torch.isfinite(value) else math.inf
