"""The participant (IoT end device): obfuscate each sample with a randomly chosen ObfNet.

Zheng et al. 2019, section 3.2: "the coordinator may train multiple ObfNets and send all of
them to each participant. The participants can randomly choose one to obfuscate the local
data. Moreover, depending on the privacy-sensitivity of the data samples, participants can
choose to obfuscate none or part of the data samples" -- the scheme is *voluntary*: the
coordinator admits raw and obfuscated samples alike and is not told which it got.

Threat model (docs/threat-models.md, ObfNet row): the coordinator is honest but curious; it
trained the ObfNets, so it knows their weights, but not which one a sample went through.
The privacy of that choice rests on its randomness, so by default it comes from the
operating system (:mod:`secrets`), which no seeding of Python, NumPy or torch can predict.
A fixed ``seed`` (for reproducible experiments) makes the choice predictable and warns.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from medshield.secure.randomness import SecurityWarning

__all__ = ["RAW", "Obfuscator", "Participant"]

#: The choice that stands for "send the raw sample" in :meth:`Participant.choose`.
RAW = -1

Obfuscator = Callable[[torch.Tensor], torch.Tensor]
"""Anything that maps a batch ``(N, C, H, W)`` to an obfuscated batch of the same shape: an
ObfNet (``nn.Module``) or an ONNX runtime session wrapper (:class:`medshield.deploy.OnnxModel`)."""

_UNIT = 2**53  # uniform floats in [0, 1) from 53 random bits


class Participant:
    """An IoT device that obfuscates its samples with one of K ObfNets picked at random.

    Parameters
    ----------
    obfnets
        The K ObfNets released by the coordinator (any :data:`Obfuscator`), in eval mode.
    p_raw
        Probability that a sample is sent raw (voluntary: the device may skip obfuscation,
        for example when it cannot afford it or the sample is not sensitive). 0 by default.
    seed
        ``None`` (default): every choice is drawn from the OS (``secrets``). An integer
        makes the choices reproducible -- and predictable by anyone who knows the seed --
        so it warns; use it for experiments only.

    Examples
    --------
    >>> from medshield.models import ObfNet2
    >>> device = Participant([ObfNet2(seed=k).eval() for k in range(3)])
    >>> x_obf, choice = device.obfuscate(torch.rand(4, 1, 28, 28))
    >>> x_obf.shape, choice.shape
    (torch.Size([4, 1, 28, 28]), (4,))
    """

    def __init__(
        self, obfnets: Sequence[Obfuscator], *, p_raw: float = 0.0, seed: int | None = None
    ) -> None:
        if len(obfnets) == 0 and p_raw < 1.0:
            raise ValueError(
                "a participant needs at least one ObfNet (or p_raw=1.0 to send everything raw)"
            )
        if not 0.0 <= p_raw <= 1.0:
            raise ValueError(f"p_raw must be a probability in [0, 1], got {p_raw}")
        self.obfnets = list(obfnets)
        self.p_raw = float(p_raw)
        self.seed = seed
        self._rng: np.random.Generator | None = None
        if seed is not None:
            warnings.warn(
                f"Participant(seed={seed}): the ObfNet choice is reproducible and therefore "
                "predictable by anyone who knows the seed; leave seed=None (OS randomness) "
                "outside experiments",
                SecurityWarning,
                stacklevel=2,
            )
            self._rng = np.random.default_rng(seed)

    @property
    def k(self) -> int:
        """Number of ObfNets to choose from."""
        return len(self.obfnets)

    def choose(self, n: int) -> np.ndarray:
        """Draw the choice for ``n`` samples.

        Returns
        -------
        np.ndarray of shape (n,), int64
            ``RAW`` (-1) for a sample sent raw, else the index of its ObfNet in ``[0, K)``,
            uniform over the K ObfNets.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if self._rng is not None:
            raw = self._rng.random(n) < self.p_raw
            pick = self._rng.integers(0, max(self.k, 1), size=n)
        else:
            raw = np.array([secrets.randbits(53) / _UNIT < self.p_raw for _ in range(n)], bool)
            pick = np.array([secrets.randbelow(max(self.k, 1)) for _ in range(n)], np.int64)
        return np.where(raw, RAW, pick).astype(np.int64)

    def obfuscate(
        self, x: torch.Tensor, choices: np.ndarray | None = None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Obfuscate a batch, each sample with its own randomly chosen ObfNet.

        Parameters
        ----------
        x
            Samples ``(N, C, H, W)``, e.g. ``(N, 1, 28, 28)`` in ``[0, 1]``.
        choices
            Override the random choice (``(N,)`` ints, ``RAW`` or an ObfNet index); for tests
            and for a device that decides per sample what is sensitive.

        Returns
        -------
        x_sent : torch.Tensor, same shape as ``x``
            What leaves the device.
        choices : np.ndarray of shape (N,)
            The choice per sample; it stays on the device (the coordinator never sees it).
        """
        n = len(x)
        c = self.choose(n) if choices is None else np.asarray(choices, dtype=np.int64)
        if c.shape != (n,):
            raise ValueError(f"choices must have shape ({n},), got {c.shape}")
        if np.any((c < RAW) | (c >= self.k)):
            raise ValueError(f"choices must be {RAW} (raw) or an ObfNet index in [0, {self.k})")
        out = x.clone()
        with torch.no_grad():
            for k in np.unique(c[c != RAW]):
                idx = torch.from_numpy(np.flatnonzero(c == k)).to(x.device)
                out[idx] = self.obfnets[int(k)](x[idx]).to(out.dtype)
        return out, c
