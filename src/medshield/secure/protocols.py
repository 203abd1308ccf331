"""The registry of secure-inference backends, and the additive-sharing backend.

``PROTOCOLS = Registry("protocol")``: every backend registers under a name and is built
with ``medshield.create("protocol", name, **options)``. A backend compiles a plaintext
model for its protocol and runs inference on secret-shared inputs.

* ``"beaver-2pc"`` (:class:`Beaver2PC`): two compute servers, additive sharing over
  ``Z_{2^l}``, the healthcare centre as offline dealer (weight-aware Beaver triples for
  linear layers, dealer-assisted comparison for ReLU / max pooling, exact truncation).
  This is the design of :mod:`medshield.secure`; it replaces PE-HEALTH's ElGamal-based
  SecConv by Beaver triples while keeping the paper's parties and threat model.
* PE-HEALTH's own ElGamal/"SecConv" variant is not implemented yet; it will be a second
  backend under this registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from medshield.registry import Registry
from medshield.secure.randomness import RandomSource

if TYPE_CHECKING:
    from torch import nn

    from medshield.secure.compiler import CompiledModel
    from medshield.secure.engine import SecureRun

__all__ = ["PROTOCOLS", "SecureInferenceProtocol", "Beaver2PC"]

PROTOCOLS: Registry[Any] = Registry("protocol")


class SecureInferenceProtocol(ABC):
    """Interface of a secure-inference backend."""

    @abstractmethod
    def compile(self, model: nn.Module, input_shape: Sequence[int]) -> CompiledModel:
        """Turn a plaintext model into this protocol's program (run by the model owner)."""

    @abstractmethod
    def run(
        self, compiled: CompiledModel, x: ArrayLike, *, rng: RandomSource | None = None
    ) -> SecureRun:
        """Secure inference of a batch, all parties in this process; returns output and costs."""

    def infer(
        self,
        model: nn.Module,
        x: ArrayLike,
        *,
        rng: RandomSource | None = None,
    ) -> SecureRun:
        """:meth:`compile` for ``x``'s per-sample shape, then :meth:`run`."""
        xa = np.asarray(x)
        return self.run(self.compile(model, xa.shape[1:]), xa, rng=rng)


@PROTOCOLS.register("beaver-2pc", aliases=("beaver", "additive-2pc"))
class Beaver2PC(SecureInferenceProtocol):
    """Two-server additive sharing with the healthcare centre as offline dealer.

    Parameters
    ----------
    frac_bits
        Fractional bits of the fixed-point encoding (PE-HEALTH's precision ``d``, binary).
    ring_bits
        Size ``l`` of the ring ``Z_{2^l}``. Every intermediate value, including products at
        ``2 * frac_bits`` fractional bits, must fit its signed range: with the defaults
        (64, 16) that is ``|x| < 2^31``; the fast setting (32, 12) allows ``|x| < 128`` after
        each linear layer and halves the traffic (check a model with
        :func:`medshield.secure.reference.range_report`).
    timeout
        Seconds a server waits for the other in one round.

    Threat model: semi-honest, non-colluding servers; honest sensor and centre.
    """

    def __init__(self, *, frac_bits: int = 16, ring_bits: int = 64, timeout: float = 120.0) -> None:
        self.frac_bits = frac_bits
        self.ring_bits = ring_bits
        self.timeout = timeout

    def compile(self, model: nn.Module, input_shape: Sequence[int]) -> CompiledModel:
        from medshield.secure.compiler import compile_model

        return compile_model(model, input_shape, frac_bits=self.frac_bits, ring_bits=self.ring_bits)

    def run(
        self, compiled: CompiledModel, x: ArrayLike, *, rng: RandomSource | None = None
    ) -> SecureRun:
        from medshield.secure.engine import run_in_process

        return run_in_process(compiled, x, rng=rng, timeout=self.timeout)
