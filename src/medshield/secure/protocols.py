"""The registry of secure-inference backends, and the additive-sharing backend.

``PROTOCOLS = Registry("protocol")``: every backend registers under a name and is built
with ``medshield.create("protocol", name, **options)``. A backend compiles a plaintext
model for its protocol and runs inference on secret-shared inputs.

* ``"beaver-2pc"`` (:class:`Beaver2PC`): two compute servers, additive sharing over
  ``Z_{2^l}``, the healthcare centre as offline dealer (weight-aware Beaver triples for
  linear layers, dealer-assisted comparison for ReLU / max pooling, exact truncation).
  This is the design of :mod:`medshield.secure`; it replaces PE-HEALTH's ElGamal-based
  SecConv by Beaver triples while keeping the paper's parties and threat model.
* ``"elgamal-2pc"`` (:class:`ElGamal2PC`): PE-HEALTH's own variant (Protocols 1-3):
  ElGamal-encrypted weights in a DDH group, SecConv by local exponentiation and
  distinguished-point walks (no communication; an error probability that grows with the
  precision, see :mod:`medshield.secure.elgamal.walk`), SecReLU by the dealer-assisted
  comparison. See :mod:`medshield.secure.elgamal`.
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

__all__ = ["PROTOCOLS", "SecureInferenceProtocol", "Beaver2PC", "ElGamal2PC"]

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


@PROTOCOLS.register("elgamal-2pc", aliases=("elgamal", "pehealth-elgamal"))
class ElGamal2PC(SecureInferenceProtocol):
    """PE-HEALTH's ElGamal variant (:mod:`medshield.secure.elgamal`).

    Parameters
    ----------
    frac_bits
        Fractional bits ``f`` of inputs and weights (the paper's decimal precision ``d``
        corresponds to ``f ~ 3.32 d``). The walks convert values of about
        ``|y| 2^{2f}``, so their error grows as ``2^{2f - dp_bits}``.
    group
        ``"toy-32"`` (default; fast, **insecure**) or ``"modp-2048"`` (RFC 3526, secure,
        about 10^4 times slower), or a :class:`~medshield.secure.elgamal.DDHGroup`.
    dp_bits
        Distinguished points have density ``2^-dp_bits`` (walks of ``2^dp_bits`` steps).
    max_steps
        ``Theta``: a walk gives up after this many steps.
    timeout
        Seconds a server waits for the other in one round.
    probe
        Record each linear layer's conversions and count the wrong ones
        (``run.extra["conversions"]``; for measurements, not deployment).

    Threat model: semi-honest, non-colluding servers; honest sensor (which knows ``sk``, as in
    the paper) and centre.
    """

    def __init__(
        self,
        *,
        frac_bits: int = 6,
        group: Any = "toy-32",
        dp_bits: int = 14,
        max_steps: int = 1 << 20,
        timeout: float = 600.0,
        probe: bool = False,
    ) -> None:
        self.frac_bits = frac_bits
        self.group = group
        self.dp_bits = dp_bits
        self.max_steps = max_steps
        self.timeout = timeout
        self.probe = probe

    def compile(self, model: nn.Module, input_shape: Sequence[int]) -> CompiledModel:
        from medshield.secure.compiler import compile_model

        return compile_model(model, input_shape, frac_bits=self.frac_bits, ring_bits=64)

    def run(
        self, compiled: CompiledModel, x: ArrayLike, *, rng: RandomSource | None = None
    ) -> SecureRun:
        from medshield.secure.elgamal import WalkParams, get_group, run_elgamal_in_process

        return run_elgamal_in_process(  # type: ignore[no-any-return]
            compiled, x, group=get_group(self.group), rng=rng, timeout=self.timeout,
            walk=WalkParams(self.dp_bits, self.max_steps), probe=self.probe)
