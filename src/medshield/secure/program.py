"""The public description of a secure inference: layer types, shapes and fixed-point scales.

A :class:`Program` is what both compute servers and the dealer know about the network:
PE-HEALTH's threat model (section III-B, goal 2) hides the parameters but not "the type of
each layer ... independent of the patient data", so shapes, layer types, strides and the
fixed-point scales are public. Weights are not part of it (see
:class:`~medshield.secure.compiler.CompiledModel`).

Scales: every wire carries a number of fractional bits. Inputs and weights use ``f``
(``frac_bits``); a linear layer multiplies them, so its output has ``2f``. A gate may
truncate (``shift``) back to ``f``. The compiler inserts an explicit ``rescale`` gate where
a linear layer would otherwise receive more than ``f`` fractional bits.

Shapes are per sample (no batch axis). 1-d convolutions and pools are stored with their
1-d shapes and evaluated as 2-d ones of height 1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from medshield.secure.ring import Ring

__all__ = [
    "Op",
    "LinearOp",
    "ConvOp",
    "GateOp",
    "MaxPoolOp",
    "AvgPoolOp",
    "ReshapeOp",
    "Program",
    "CompiledModel",
]

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Op:
    """One step of a program.

    Attributes
    ----------
    name
        The layer's name in the torch model (``"fc1"``, ``"3"``); inserted rescale gates
        are named ``"<next layer>.rescale"``.
    in_shape, out_shape
        Per-sample shapes.
    in_scale, out_scale
        Fractional bits of the input and output wires.
    """

    name: str
    in_shape: Shape
    out_shape: Shape
    in_scale: int
    out_scale: int

    @property
    def kind(self) -> str:
        """A short lowercase name of the operation."""
        return type(self).__name__.removesuffix("Op").lower()


@dataclass(frozen=True)
class LinearOp(Op):
    """``y = x W^T + b`` (torch ``nn.Linear``); ``W`` is ``(out_features, in_features)``."""

    in_features: int = 0
    out_features: int = 0
    bias: bool = True


@dataclass(frozen=True)
class ConvOp(Op):
    """Cross-correlation (torch ``nn.Conv1d``/``nn.Conv2d``, zero padding, groups 1).

    ``kernel``, ``stride`` and ``padding`` are 2-d (height first); a 1-d layer has
    ``dims == 1``, kernel ``(1, k)`` and padding ``(0, p)``.
    """

    in_channels: int = 0
    out_channels: int = 0
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    bias: bool = True
    dims: int = 2


@dataclass(frozen=True)
class GateOp(Op):
    """A comparison-based gate: ``relu``, ``rescale`` or ``square`` with truncation ``shift``."""

    gate: str = "relu"
    shift: int = 0

    @property
    def kind(self) -> str:
        return self.gate


@dataclass(frozen=True)
class MaxPoolOp(Op):
    """Max pooling by a tournament of ``max(a, b) = b + relu(a - b)`` gates (no padding)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    dims: int = 2

    @property
    def window(self) -> int:
        return self.kernel[0] * self.kernel[1]


@dataclass(frozen=True)
class AvgPoolOp(Op):
    """Mean pooling, local on shares: window sums times ``multiplier``.

    The division by ``divisor`` is folded into the scale: a power of two ``2^k`` adds ``k``
    fractional bits (``multiplier == 1``); anything else multiplies by
    ``round(2^f / divisor)`` and adds ``f``.
    """

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)
    divisor: int = 4
    multiplier: int = 1
    dims: int = 2


@dataclass(frozen=True)
class ReshapeOp(Op):
    """Flatten / unflatten: a change of per-sample shape, nothing else."""


@dataclass(frozen=True)
class Program:
    """A compiled network's public structure.

    Attributes
    ----------
    ops
        The steps in order.
    input_shape
        Per-sample input shape, e.g. ``(1, 28, 28)``.
    frac_bits
        ``f``: fractional bits of inputs and weights (PE-HEALTH's precision degree ``d``,
        in bits).
    ring_bits
        ``l``: shares live in ``Z_{2^l}``; every intermediate value must fit its signed range.
    """

    ops: tuple[Op, ...]
    input_shape: Shape
    frac_bits: int
    ring_bits: int
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def output_shape(self) -> Shape:
        return self.ops[-1].out_shape if self.ops else self.input_shape

    @property
    def output_scale(self) -> int:
        return self.ops[-1].out_scale if self.ops else self.frac_bits

    @cached_property
    def _fingerprint(self) -> str:
        doc = {
            "ops": [[type(op).__name__, asdict(op)] for op in self.ops],
            "input_shape": self.input_shape,
            "frac_bits": self.frac_bits,
            "ring_bits": self.ring_bits,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        """A short hash of the structure (both servers and the dealer must agree on it)."""
        return self._fingerprint

    def rounds(self) -> int:
        """Online server-to-server rounds of one inference (any batch size)."""
        from medshield.secure.gates import gate_rounds

        total = 0
        for op in self.ops:
            if isinstance(op, LinearOp | ConvOp):
                total += 1
            elif isinstance(op, GateOp):
                total += gate_rounds(op.gate, op.shift, self.ring_bits)
            elif isinstance(op, MaxPoolOp):
                levels = (op.window - 1).bit_length()
                total += levels * gate_rounds("relu", 0, self.ring_bits)
        return total

    def describe(self) -> str:
        """A plain-text table of the steps."""
        lines = [
            f"Program: input {self.input_shape}, ring Z_2^{self.ring_bits}, "
            f"{self.frac_bits} fractional bits, {self.rounds()} online rounds",
            f"{'name':<16}{'op':<10}{'in':<18}{'out':<18}{'scale':<8}",
        ]
        for op in self.ops:
            extra = f" shift {op.shift}" if isinstance(op, GateOp) else ""
            lines.append(
                f"{op.name:<16}{op.kind:<10}{str(op.in_shape):<18}{str(op.out_shape):<18}"
                f"{op.in_scale}->{op.out_scale}{extra}"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class CompiledModel:
    """A compiled network, held by the healthcare centre.

    Attributes
    ----------
    program
        The public structure (safe to send to the servers).
    weights
        ``op name -> {"w": ..., "b": ...}``: weights encoded at ``frac_bits`` and biases at
        the layer's output scale, as ring elements. **Private to the centre.**
    """

    program: Program
    weights: dict[str, dict[str, np.ndarray]]

    @property
    def ring(self) -> Ring:
        """The ring ``Z_{2^l}`` of the program."""
        return Ring(self.program.ring_bits)
