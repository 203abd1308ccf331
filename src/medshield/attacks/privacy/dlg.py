"""Deep Leakage from Gradients (Zhu and Han, NeurIPS 2019): images and labels from gradients.

The adversary sees the gradient :math:`\\nabla W` of a batch's loss with respect to the
model's parameters and knows the model. It draws dummy inputs :math:`x'` and dummy label
logits :math:`y'` and minimises the gradient distance (DLG, eq. 4)

.. math:: \\min_{x', y'} \\; \\sum_{W} \\big\\| \\nabla_W \\ell(F(x'; W), \\mathrm{softmax}(y'))
          - \\nabla_W \\big\\|_2^2

with L-BFGS (the paper's choice) or Adam. Given the labels (split learning sends them to the
server), only :math:`x'` is optimised with the hard-label cross-entropy.

Threat model: :data:`~medshield.attacks.privacy.threat.GRADIENT_LEAKAGE` (or
``GRADIENT_LEAKAGE_WITH_LABELS`` when the labels are observed).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.attacks.privacy.result import InversionResult
from medshield.attacks.privacy.threat import (
    GRADIENT_LEAKAGE,
    GRADIENT_LEAKAGE_WITH_LABELS,
    Knowledge,
    Observation,
    ThreatModel,
    ThreatModelError,
    model_device,
)
from medshield.attacks.registry import ATTACKS
from medshield.models.base import eval_mode

__all__ = ["DLG", "observe_gradients", "gradient_distance", "soft_cross_entropy"]


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy with soft targets ``target`` ``(N, K)`` (rows sum to one)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def observe_gradients(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """What a gradient-leakage adversary observes: ``d mean CE(model(x), y) / d W`` per parameter.

    The model runs in eval mode (no dropout noise, BatchNorm with its running statistics), the
    setting in which the adversary can replay the forward pass exactly; the training flags are
    restored afterwards. Parameters the loss does not depend on are left out.
    """
    with eval_mode(model):
        names, params = zip(
            *[(n, p) for n, p in model.named_parameters() if p.requires_grad], strict=True
        )
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {n: g.detach() for n, g in zip(names, grads, strict=True) if g is not None}


def gradient_distance(
    model: nn.Module, x: Tensor, target: Tensor, observed: dict[str, Tensor], *, soft: bool
) -> Tensor:
    """DLG's objective: squared L2 distance between the gradients at ``x`` and the observed ones.

    ``target`` is ``(N, K)`` soft labels (``soft=True``) or ``(N,)`` class indices.
    The result is differentiable w.r.t. ``x`` (and ``target``) through a double backward.
    """
    named = dict(model.named_parameters())
    params = [named[name] for name in observed]
    logits = model(x)
    loss = soft_cross_entropy(logits, target) if soft else F.cross_entropy(logits, target)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return sum(((g - observed[n]) ** 2).sum() for n, g in zip(observed, grads, strict=True))


class GradientInversion:
    """Shared machinery of DLG and iDLG: check the threat model, optimise dummy data."""

    threat_model: ClassVar[ThreatModel] = GRADIENT_LEAKAGE

    def __init__(
        self,
        *,
        batch_size: int = 1,
        iterations: int = 300,
        optimizer: str = "lbfgs",
        lr: float = 1.0,
        restarts: int = 1,
        clamp: bool = True,
        seed: int = 0,
    ) -> None:
        if optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
        if batch_size < 1 or iterations < 1 or restarts < 1:
            raise ValueError("batch_size, iterations and restarts must be positive integers")
        self.batch_size = batch_size
        self.iterations = iterations
        self.optimizer = optimizer
        self.lr = lr
        self.restarts = restarts
        self.clamp = clamp
        self.seed = seed

    def __repr__(self) -> str:
        keys = ("batch_size", "iterations", "optimizer", "lr", "restarts", "seed")
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"

    # ------------------------------------------------------------------ helpers
    def _checked(
        self, observation: Observation, knowledge: Knowledge
    ) -> tuple[nn.Module, tuple[int, ...], dict[str, Tensor]]:
        tm = GRADIENT_LEAKAGE_WITH_LABELS if observation.labels is not None else self.threat_model
        tm.check(observation, knowledge)
        assert knowledge.model is not None and knowledge.input_shape is not None
        assert observation.gradients is not None
        named = dict(knowledge.model.named_parameters())
        unknown = [n for n in observation.gradients if n not in named]
        if unknown:
            raise ThreatModelError(
                f"observed gradients for {unknown[:3]} which are not parameters of the known "
                "model; name them as model.named_parameters() does"
            )
        dev = model_device(knowledge.model)
        grads = {n: g.detach().to(dev) for n, g in observation.gradients.items()}
        return knowledge.model, tuple(knowledge.input_shape), grads

    def _optimise(
        self,
        objective: Any,
        variables: list[Tensor],
    ) -> float:
        """Minimise ``objective()`` over ``variables`` in place; return the final value."""
        if self.optimizer == "lbfgs":
            opt: torch.optim.Optimizer = torch.optim.LBFGS(
                variables,
                lr=self.lr,
                max_iter=self.iterations,
                max_eval=math.ceil(self.iterations * 1.25),
                history_size=100,
                tolerance_grad=1e-10,
                tolerance_change=1e-14,
                line_search_fn="strong_wolfe",
            )

            def closure() -> Tensor:
                opt.zero_grad()
                value = objective()
                value.backward()
                return value

            opt.step(closure)
        else:
            opt = torch.optim.Adam(variables, lr=self.lr)
            for _ in range(self.iterations):
                opt.zero_grad()
                objective().backward()
                opt.step()
        value = objective().detach()  # needs autograd: the objective is a gradient itself
        return float(value) if torch.isfinite(value) else math.inf

    def _run(
        self,
        model: nn.Module,
        shape: tuple[int, ...],
        grads: dict[str, Tensor],
        labels: Tensor | None,
        num_classes: int,
    ) -> InversionResult:
        dev = model_device(model)
        gen = torch.Generator().manual_seed(self.seed)
        best: tuple[float, Tensor, Tensor | None] | None = None
        with eval_mode(model):
            for _ in range(self.restarts):
                x = torch.rand(self.batch_size, *shape, generator=gen).to(dev).requires_grad_(True)
                if labels is None:
                    y = torch.randn(self.batch_size, num_classes, generator=gen).to(dev)
                    y.requires_grad_(True)

                    def objective(x: Tensor = x, y: Tensor = y) -> Tensor:
                        return gradient_distance(model, x, y.softmax(1), grads, soft=True)

                    value = self._optimise(objective, [x, y])
                    rec_labels: Tensor | None = y.detach().argmax(1)
                else:
                    hard = labels.to(dev)

                    def objective(x: Tensor = x, hard: Tensor = hard) -> Tensor:
                        return gradient_distance(model, x, hard, grads, soft=False)

                    value = self._optimise(objective, [x])
                    rec_labels = hard
                if best is None or value < best[0]:
                    best = (value, x.detach(), rec_labels)
        assert best is not None
        rec = best[1].clamp(0, 1) if self.clamp else best[1]
        return InversionResult(
            reconstruction=rec.cpu(),
            labels=None if best[2] is None else best[2].cpu(),
            info={
                "gradient_distance": best[0],
                "restarts": self.restarts,
                "threat_model": self.threat_model.name,
            },
        )


def num_classes_of(model: nn.Module) -> int:
    """Output size of the last ``nn.Linear`` of ``model`` (the number of classes)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            "gradient inversion needs a classifier ending in an nn.Linear layer (to size the "
            "dummy labels); pass the labels in the Observation instead"
        )
    return linears[-1].out_features


@ATTACKS.register("dlg", aliases=("deep-leakage",))
class DLG(GradientInversion):
    """Deep Leakage from Gradients: optimise dummy images and soft labels to match gradients.

    Parameters
    ----------
    batch_size
        Images in the attacked batch (the adversary knows it: the gradient is of a batch mean).
    iterations
        Optimiser iterations (L-BFGS: inner iterations; Adam: steps).
    optimizer
        ``"lbfgs"`` (the paper's, with strong-Wolfe line search) or ``"adam"``.
    lr
        Step size (1.0 for L-BFGS, ~0.1 for Adam).
    restarts
        Random restarts; the one with the smallest gradient distance is kept.
    clamp
        Clamp the reconstruction into ``[0, 1]`` at the end.
    seed
        Seed of the dummy-data initialisation.

    Shapes: observed gradients as the model's parameters; reconstruction
    ``(batch_size, *input_shape)``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from medshield.attacks.privacy import DLG, Knowledge, Observation, observe_gradients
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    >>> x, y = torch.rand(1, 1, 2, 2), torch.tensor([1])
    >>> obs = Observation(gradients=observe_gradients(model, x, y))
    >>> know = Knowledge(model=model, input_shape=(1, 2, 2))
    >>> result = DLG(iterations=50).run(obs, know)
    >>> result.reconstruction.shape
    torch.Size([1, 1, 2, 2])
    """

    def run(self, observation: Observation, knowledge: Knowledge) -> InversionResult:
        """Reconstruct the batch behind ``observation.gradients`` (labels too, if not given)."""
        model, shape, grads = self._checked(observation, knowledge)
        result = self._run(model, shape, grads, observation.labels, num_classes_of(model))
        if observation.labels is not None:
            result.info["threat_model"] = GRADIENT_LEAKAGE_WITH_LABELS.name
        return result
