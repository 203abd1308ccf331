"""Noise on the cut-layer activations of a split network (Titcombe et al., 2021).

Titcombe, Hall, Papadopoulos and Romanini, "Practical defences against model inversion
attacks for split neural networks", ICLR 2021 workshop on distributed and private ML: the
device adds noise to its intermediate output before sending it,
:math:`\\tilde a = a + \\epsilon` with :math:`\\epsilon_i \\sim \\mathrm{Laplace}(0, b)`
(their choice) or :math:`\\mathcal N(0, \\sigma^2)`, in training and at inference. The server
half learns to classify noisy activations; a decoder inverting them loses detail.

Threat model (``docs/threat-models.md``, PGSL / split learning): against the paper's black-box
attacker. It is no formal (differential-privacy) guarantee: the scale is not calibrated to a
sensitivity. The critic's attacker who knows the defence trains its decoder on noised
activations (:class:`~medshield.attacks.privacy.DecoderInversion` with a query that adds the
noise), and the evaluation must report that attacker too.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from medshield.defenses.base import DEFENSES

__all__ = ["ActivationNoise"]

Distribution = Literal["laplace", "gaussian"]


@DEFENSES.register("activation-noise", aliases=("noise", "laplace-noise", "titcombe"))
class ActivationNoise(nn.Module):
    """A layer that adds i.i.d. Laplace or Gaussian noise to its input (the cut activations).

    Parameters
    ----------
    scale
        Laplace scale :math:`b` (standard deviation :math:`\\sqrt 2 b`) or Gaussian
        :math:`\\sigma`; ``0`` disables the noise.
    distribution
        ``"laplace"`` (Titcombe et al.) or ``"gaussian"``.
    seed
        Seed of the layer's private generator (``None``: the global torch RNG). The generator
        lives on the input's device and is created at the first call.
    train_only
        Add noise only in training mode (the paper adds it at inference too: ``False``).

    Shapes: any ``(N, *A)`` -> the same shape.

    Examples
    --------
    >>> import torch
    >>> noise = ActivationNoise(scale=0.5, seed=0)
    >>> a = torch.zeros(2, 3)
    >>> bool((noise(a) != 0).all()), noise(a).shape
    (True, torch.Size([2, 3]))
    """

    def __init__(
        self,
        *,
        scale: float = 0.5,
        distribution: Distribution = "laplace",
        seed: int | None = None,
        train_only: bool = False,
    ) -> None:
        super().__init__()
        if scale < 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        if distribution not in ("laplace", "gaussian"):
            raise ValueError(
                f"distribution must be 'laplace' or 'gaussian', got {distribution!r}"
            )
        self.scale = float(scale)
        self.distribution: Distribution = distribution
        self.seed = seed
        self.train_only = train_only
        self._generator: torch.Generator | None = None

    def extra_repr(self) -> str:
        return f"scale={self.scale}, distribution={self.distribution!r}, seed={self.seed}"

    def _gen(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def sample(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Noise of the given shape (Laplace by inverse CDF of a uniform, or Gaussian)."""
        gen = self._gen(device)
        if self.distribution == "gaussian":
            return self.scale * torch.randn(shape, generator=gen, device=device, dtype=dtype)
        # Laplace(0, b): b * sign(u) * -log(1 - 2|u|), u ~ U(-1/2, 1/2)
        u = torch.rand(shape, generator=gen, device=device, dtype=dtype) - 0.5
        tail = (1 - 2 * u.abs()).clamp_min(torch.finfo(dtype).tiny)  # u = -1/2 is possible
        return -self.scale * u.sign() * torch.log(tail)

    def forward(self, act: Tensor) -> Tensor:
        if self.scale == 0 or (self.train_only and not self.training):
            return act
        return act + self.sample(act.shape, act.device, act.dtype)

    def defend(self, device_half: nn.Module) -> nn.Sequential:
        """``device_half`` followed by this noise layer: the defended device half."""
        return nn.Sequential(device_half, self)
