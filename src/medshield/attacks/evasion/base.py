"""The shared base of every evasion attack: eval mode, device, the box, the seed, targets.

Threat model (``docs/threat-models.md``, robust medical imaging): a white-box evasion attacker
at test time. It knows the architecture, the weights and the defence, it can compute
gradients of the model's outputs with respect to the input, and it wants a wrong diagnosis
(untargeted) or a chosen wrong one (targeted). It cannot touch the weights or the training
data. Black-box attacks (:class:`~medshield.attacks.evasion.pixel.OnePixel`) use only the
model's output probabilities.

Subclasses implement :meth:`EvasionAttack.forward`; :meth:`EvasionAttack.__call__` wraps it
the way torchattacks' ``Attack`` does, so an attack is used as ``x_adv = attack(x, y)``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EvasionAttack", "Norm", "success"]

Norm = Literal["linf", "l2", "l0"]


class EvasionAttack:
    """Base class: subclasses implement ``forward(x, y, target=None) -> x_adv``.

    The base class

    * puts the model in eval mode for the attack and restores every submodule's training
      flag afterwards (also when the attack raises);
    * moves the inputs to the model's device and returns the result on the input's device
      with the input's dtype and shape;
    * checks that the inputs lie in the box ``bounds`` (default ``[0, 1]``; the model must
      do its own normalisation) and keeps the output in it;
    * gives the attack a private ``torch.Generator`` seeded with ``seed`` for each call, so
      that a call is reproducible and the global RNG is never touched;
    * runs with gradients enabled even under ``torch.no_grad()``.

    Binary models: a model with two logits is an ordinary two-class model. A model with a
    single logit ``z`` (shape ``(N,)`` or ``(N, 1)``, meaning ``P(class 1) = sigmoid(z)``) is
    read as the two logits ``[-z/2, z/2]``: their softmax is ``[1 - sigmoid(z), sigmoid(z)]``
    and their cross-entropy is the binary cross-entropy with logits, so every attack works
    unchanged with labels in ``{0, 1}``. (The symmetric split, rather than ``[0, z]``, gives
    both classes a non-zero gradient, which JSMA's saliency conditions need.)

    Parameters
    ----------
    model
        The classifier under attack, ``(N, *shape) -> (N, K)`` logits (or ``(N,)``/``(N, 1)``
        for a single-logit binary model). Its parameters are not modified.
    bounds
        The box ``(low, high)`` the inputs live in and the adversarial inputs stay in.
    seed
        Seed of the attack's private generator (random starts, evolution). ``None`` draws a
        fresh seed from the OS at every call (not reproducible).
    **hyperparameters
        The attack's own settings, stored as attributes and listed by ``repr``.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from medshield.attacks.evasion import FGSM
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    >>> x_adv = FGSM(model, eps=0.1)(x, y)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    """

    #: The norm the attack measures its perturbation in.
    norm: ClassVar[Norm] = "linf"
    #: Whether ``target=`` is accepted.
    supports_targeted: ClassVar[bool] = True
    #: Whether the attack's result depends on ``seed``.
    uses_randomness: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int | None = 0,
        **hyperparameters: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module, got {type(model).__name__}; wrap a plain "
                "function in an nn.Module whose forward calls it"
            )
        low, high = float(bounds[0]), float(bounds[1])
        if not low < high:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
        self.model = model
        self.bounds = (low, high)
        self.seed = seed
        self.hyperparameters: dict[str, Any] = dict(hyperparameters)
        for name, value in hyperparameters.items():
            setattr(self, name, value)

    # ------------------------------------------------------------------ public API
    def forward(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Return adversarial examples for ``x`` (true labels ``y``, optional ``target``).

        Called by :meth:`__call__` with ``x`` on the model's device, in the box, with the
        model in eval mode and gradients enabled.
        """
        raise NotImplementedError

    def __call__(self, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Attack the batch ``x`` of shape ``(N, *shape)`` with true labels ``y`` ``(N,)``.

        ``target`` (``(N,)`` class indices) makes the attack targeted: it then looks for an
        input classified as ``target`` instead of any class but ``y``. Returns a tensor of
        ``x``'s shape, dtype and device.
        """
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point torch.Tensor of shape (N, *shape)")
        if x.dim() < 2:
            raise ValueError(
                f"x must have a batch dimension, (N, *shape); got shape {tuple(x.shape)}"
            )
        y = torch.as_tensor(y)
        if y.shape != x.shape[:1]:
            raise ValueError(
                f"y must hold one class index per example, shape ({x.shape[0]},); got {tuple(y.shape)}"
            )
        if target is not None:
            if not self.supports_targeted:
                raise ValueError(
                    f"{type(self).__name__} is untargeted only; call it without target="
                )
            target = torch.as_tensor(target)
            if target.shape != x.shape[:1]:
                raise ValueError(
                    f"target must hold one class index per example, shape ({x.shape[0]},); "
                    f"got {tuple(target.shape)}"
                )
        low, high = self.bounds
        if x.numel():
            x_min, x_max = (float(v) for v in torch.aminmax(x.detach()))
            if x_min < low - 1e-6 or x_max > high + 1e-6:
                raise ValueError(
                    f"inputs lie outside the box [{low}, {high}] (min {x_min:.4g}, max "
                    f"{x_max:.4g}); pass the attack images in that range and put the "
                    "normalisation inside the model, or set bounds="
                )
        device = self.device
        x_in = x.detach().to(device)
        y_in = y.to(device=device, dtype=torch.long)
        t_in = None if target is None else target.to(device=device, dtype=torch.long)
        with self._eval_mode(), torch.enable_grad():
            x_adv = self.forward(x_in, y_in, t_in)
        return x_adv.detach().to(device=x.device, dtype=x.dtype)

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (or buffer); the CPU for neither."""
        for tensor in self.model.parameters():
            return tensor.device
        for tensor in self.model.buffers():
            return tensor.device
        return torch.device("cpu")

    def __repr__(self) -> str:
        items = {**self.hyperparameters, "bounds": self.bounds, "seed": self.seed}
        args = ", ".join(f"{k}={v!r}" for k, v in items.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ helpers
    def logits(self, x: Tensor) -> Tensor:
        """The model's logits ``(N, K)``; a single-logit model gives ``[-z/2, z/2]`` (``K = 2``)."""
        out = self.model(x)
        if out.dim() == 1:
            out = out.unsqueeze(1)
        if out.dim() != 2:
            raise ValueError(
                f"the model must return logits of shape (N, K); got shape {tuple(out.shape)}"
            )
        if out.shape[1] == 1:
            half = out / 2
            out = torch.cat([-half, half], dim=1)
        return out

    def loss_grad(self, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Gradient of the attacker's objective w.r.t. ``x``: ascend it to attack.

        Untargeted: the mean cross-entropy of the true labels; targeted: minus the mean
        cross-entropy of the targets (as torchattacks and ART do).
        """
        x = x.detach().requires_grad_(True)
        logits = self.logits(x)
        if target is None:
            loss = F.cross_entropy(logits, y)
        else:
            loss = -F.cross_entropy(logits, target)
        (grad,) = torch.autograd.grad(loss, x)
        return grad

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with ``seed`` (draw on the CPU, then move)."""
        seed = self.seed if self.seed is not None else secrets.randbits(63)
        return torch.Generator().manual_seed(int(seed))

    def clip(self, x: Tensor) -> Tensor:
        """``x`` clamped into the box."""
        return x.clamp(self.bounds[0], self.bounds[1])

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        modes = [(m, m.training) for m in _modules(self.model)]
        if not any(training for _, training in modes):  # already in eval mode: nothing to do
            yield
            return
        self.model.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training


def _modules(model: nn.Module) -> list[nn.Module]:
    """Every submodule of ``model`` (itself included), each once; ``Module.modules()`` without
    the prefix strings it builds (which cost more than the attack of a small batch)."""
    seen: set[int] = set()
    out: list[nn.Module] = []
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        out.append(module)
        stack.extend(child for child in module._modules.values() if child is not None)
    return out


def success(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    """Boolean ``(N,)``: the prediction is the target (targeted) or not the true label."""
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y
