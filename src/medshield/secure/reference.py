"""Plaintext references of a compiled program: fixed-point emulation and range checks.

* :func:`simulate` runs the program on *unshared* ring values with exactly the arithmetic the
  protocol realises (same encodings, same window order, floor truncation, wrap-around modulo
  ``2^l``). The secure result differs from it only by the protocol's stochastic rounding
  (each truncation may round up by one unit), so tests compare the two closely.
* :func:`range_report` runs the same steps in float64 and reports, per step, the largest
  magnitude reached against the ring's signed range ``2^(l-1) / 2^scale``. The protocol is
  exact inside that range and silently wrong outside it (any fixed-point MPC is), so the
  healthcare centre should check a model on sample data before deploying it with a small
  ring (``l = 32``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medshield.secure.layers import affine, avgpool_local, weight_matrix, windows
from medshield.secure.program import (
    AvgPoolOp,
    CompiledModel,
    ConvOp,
    GateOp,
    LinearOp,
    MaxPoolOp,
    Program,
    ReshapeOp,
)
from medshield.secure.ring import U64

__all__ = ["simulate", "float_forward", "RangeRow", "range_report"]


def _as_2d(x: np.ndarray, dims: int) -> np.ndarray:
    return x[:, :, None, :] if dims == 1 else x


def simulate(compiled: CompiledModel, x: ArrayLike) -> NDArray[np.float64]:
    """The program's output on ``x`` with deterministic fixed-point arithmetic.

    Parameters
    ----------
    x
        Real inputs ``(batch, *program.input_shape)``.

    Returns
    -------
    ndarray float64 ``(batch, *program.output_shape)``, decoded at the output scale.
    """
    prog = compiled.program
    ring = compiled.ring
    v: U64 = ring.encode(np.asarray(x, dtype=np.float64), prog.frac_bits)
    for op in prog.ops:
        if isinstance(op, LinearOp | ConvOp):
            w = compiled.weights[op.name]
            y = affine(op, v, weight_matrix(op, w["w"], ring), ring)
            if "b" in w:
                b = w["b"] if isinstance(op, LinearOp) else w["b"].reshape((-1,) + (1,) * (y.ndim - 2))
                y = y + b
            v = ring.reduce(y)
        elif isinstance(op, GateOp):
            s = ring.to_signed(v) >> op.shift
            if op.gate == "relu":
                s = np.maximum(s, 0)
            elif op.gate == "square":
                s = s * s  # int64 wrap-around, then reduced: same as the ring
            v = ring.from_signed(s)
        elif isinstance(op, MaxPoolOp):
            win = windows(_as_2d(ring.to_signed(v), op.dims), op.kernel, op.stride, (0, 0))
            v = ring.from_signed(win.max(axis=-1).reshape((v.shape[0], *op.out_shape)))
        elif isinstance(op, AvgPoolOp):
            v = avgpool_local(op, v, ring)
        elif isinstance(op, ReshapeOp):
            v = v.reshape((v.shape[0], *op.out_shape))
    return ring.decode(v, prog.output_scale)


def float_forward(compiled: CompiledModel, x: ArrayLike) -> list[NDArray[np.float64]]:
    """Per-step float64 outputs of the program, with the *encoded* (quantised) weights.

    Gate inputs are the previous step's outputs; element ``i`` of the list is the output of
    ``program.ops[i]``.
    """
    prog = compiled.program
    ring = compiled.ring
    f = prog.frac_bits
    v = np.asarray(x, dtype=np.float64)
    outs: list[NDArray[np.float64]] = []
    for op in prog.ops:
        if isinstance(op, LinearOp | ConvOp):
            w = ring.decode(compiled.weights[op.name]["w"], f)
            if isinstance(op, LinearOp):
                y = v @ w.T
            else:
                cols = windows(_as_2d(v, op.dims), op.kernel, op.stride, op.padding)
                bsz, c, oh, ow, k = cols.shape
                pat = cols.transpose(0, 2, 3, 1, 4).reshape(bsz * oh * ow, c * k)
                y = (pat @ w.reshape(op.out_channels, -1).T).reshape(bsz, oh, ow, -1)
                y = y.transpose(0, 3, 1, 2).reshape((bsz, *op.out_shape))
            if "b" in compiled.weights[op.name]:
                b = ring.decode(compiled.weights[op.name]["b"], op.out_scale)
                y = y + (b if isinstance(op, LinearOp) else b.reshape((-1,) + (1,) * (y.ndim - 2)))
            v = y
        elif isinstance(op, GateOp):
            v = np.maximum(v, 0) if op.gate == "relu" else v * v if op.gate == "square" else v
        elif isinstance(op, MaxPoolOp):
            win = windows(_as_2d(v, op.dims), op.kernel, op.stride, (0, 0))
            v = win.max(axis=-1).reshape((v.shape[0], *op.out_shape))
        elif isinstance(op, AvgPoolOp):
            win = windows(_as_2d(v, op.dims), op.kernel, op.stride, op.padding)
            v = (win.sum(axis=-1) / op.divisor).reshape((v.shape[0], *op.out_shape))
        elif isinstance(op, ReshapeOp):
            v = v.reshape((v.shape[0], *op.out_shape))
        outs.append(v)
    return outs


@dataclass(frozen=True)
class RangeRow:
    """The largest magnitude a step's values reach, against what the ring holds."""

    name: str
    kind: str
    scale: int
    max_abs: float
    limit: float

    @property
    def headroom_bits(self) -> float:
        """``log2(limit / max_abs)``; below 1 is risky on unseen data, below 0 is wrong."""
        return math.inf if self.max_abs == 0 else math.log2(self.limit / self.max_abs)


def range_report(compiled: CompiledModel, x: ArrayLike) -> list[RangeRow]:
    """Per step: the largest ``|value|`` on the sample ``x`` and the ring's limit at its scale.

    A max pool's comparisons also see differences of two inputs, so its input row uses
    twice the largest input. Inputs to the first step are row ``"input"``.
    """
    prog: Program = compiled.program
    xa = np.asarray(x, dtype=np.float64)
    half = 2.0 ** (prog.ring_bits - 1)
    rows = [RangeRow("input", "input", prog.frac_bits, float(np.abs(xa).max(initial=0)),
                     half / 2.0**prog.frac_bits)]
    prev = xa
    for op, out in zip(prog.ops, float_forward(compiled, xa), strict=True):
        if isinstance(op, MaxPoolOp):
            rows.append(RangeRow(f"{op.name}.diff", "maxpool", op.in_scale,
                                 2 * float(np.abs(prev).max(initial=0)), half / 2.0**op.in_scale))
        rows.append(RangeRow(op.name, op.kind, op.out_scale, float(np.abs(out).max(initial=0)),
                             half / 2.0**op.out_scale))
        prev = out
    return rows
