"""What every defence shares: the registry, mode bookkeeping and the classification loss.

A defence is a callable object. Its constructor only stores keyword hyperparameters; calling
it with a model and a training loader returns the defended model::

    model = FGSMAdversarialTraining(eps=0.001, epochs=2)(model, train_loader)
    student = Distillation(temperature=10)(model, train_loader)

so defences stack: the output of one is the input of the next. A defence that trains the
given model (adversarial training) returns that same object; one that trains a new model
(distillation) returns the new model. Either way the train/eval flags of every submodule of
the given model are what they were before the call.

Threat model (``docs/threat-models.md``, robust medical imaging): the defences here aim at a
white-box evasion attacker at test time who knows the architecture, the weights and the
defence itself. A defence is only judged against attacks that use that knowledge (PGD with
many steps, C&W on the logits), never only against the attack it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.registry import Registry

__all__ = ["DEFENSES", "preserve_modes", "classification_loss", "two_logits", "loader_batch_size"]

DEFENSES: Registry[Any] = Registry("defense")
"""Every defence, by name: ``DEFENSES.create("pgd-at", eps=0.1)``."""


@contextmanager
def preserve_modes(*models: nn.Module) -> Iterator[None]:
    """Restore the ``training`` flag of every submodule of ``models`` on exit (also on error)."""
    saved = [(m, m.training) for model in models for m in model.modules()]
    try:
        yield
    finally:
        for module, flag in saved:
            module.training = flag


def two_logits(out: Tensor) -> Tensor:
    """Logits ``(N, K)``; a single-logit binary output ``z`` (``(N,)``/``(N, 1)``) -> ``[0, z]``.

    ``softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]``, so cross-entropy on the pair equals
    binary cross-entropy on ``z`` (the convention of :mod:`medshield.attacks`).
    """
    if out.dim() == 1:
        out = out.unsqueeze(1)
    if out.dim() != 2:
        raise ValueError(f"a classifier must return logits (N, K) or (N,); got {tuple(out.shape)}")
    if out.shape[1] == 1:
        out = torch.cat([torch.zeros_like(out), out], dim=1)
    return out


def classification_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of logits ``out`` ``(N, K)`` (or one logit: binary) and labels ``(N,)``."""
    return F.cross_entropy(two_logits(out), y.long())


def loader_batch_size(loader: Iterable[Any], default: int = 32) -> int:
    """The batch size of a ``DataLoader`` (``default`` for other iterables)."""
    size = getattr(loader, "batch_size", None)
    return int(size) if isinstance(size, int) and size > 0 else default


def check_unit(name: str, value: float) -> None:
    """Raise a clear error unless ``0 <= value <= 1``."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
