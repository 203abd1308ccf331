"""Compile a plaintext ``torch.nn.Sequential`` into a secure :class:`Program`.

The healthcare centre runs this (it owns the model). The result is a
:class:`CompiledModel`: the public :class:`Program` (layer types, shapes, scales; sent to
the servers) and the weights encoded in the ring (kept by the centre; only additive shares
of them ever leave it, see :meth:`HealthcareCentre.share_model`).

Supported layers (as in :data:`medshield.models.pehealth.SECURE_LAYERS`): ``Conv1d``,
``Conv2d`` (zero padding, ``groups=1``, no dilation), ``Linear``, ``ReLU``,
:class:`medshield.models.layers.Square`, ``MaxPool1d``/``MaxPool2d`` (no padding),
``AvgPool1d``/``AvgPool2d`` (``count_include_pad=True`` when padded), ``Flatten``,
``Unflatten``; ``Identity`` and ``Dropout`` are skipped (inference). Nested
``Sequential`` containers are flattened.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from medshield.models.layers import Square
from medshield.secure.program import (
    AvgPoolOp,
    CompiledModel,
    ConvOp,
    GateOp,
    LinearOp,
    MaxPoolOp,
    Op,
    Program,
    ReshapeOp,
)
from medshield.secure.ring import U64, Ring

__all__ = ["CompiledModel", "compile_model", "UnsupportedLayer"]  # CompiledModel re-exported

_SKIP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)


class UnsupportedLayer(TypeError):
    """The model has a layer (or a layer option) the secure protocol cannot evaluate."""


def _leaves(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
        return
    if list(module.children()):
        raise UnsupportedLayer(
            f"{prefix or type(module).__name__} ({type(module).__name__}) is a container "
            "other than nn.Sequential; its forward pass may do more than chain its children. "
            "Rewrite the model as an nn.Sequential of supported layers."
        )
    yield prefix or type(module).__name__.lower(), module


def _pair(v: int | Sequence[int], dims: int) -> tuple[int, int]:
    t = (v,) * dims if isinstance(v, int) else tuple(v)
    return (1, t[0]) if dims == 1 else (t[0], t[1])


def _pad_pair(v: int | Sequence[int], dims: int) -> tuple[int, int]:
    t = (v,) * dims if isinstance(v, int) else tuple(v)
    return (0, t[0]) if dims == 1 else (t[0], t[1])


def _unsupported(name: str, module: nn.Module, what: str, fix: str) -> UnsupportedLayer:
    return UnsupportedLayer(f"{name} ({type(module).__name__}): {what} is not supported; {fix}")


def compile_model(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    frac_bits: int = 16,
    ring_bits: int = 64,
) -> CompiledModel:
    """Compile ``model`` for inputs of per-sample shape ``input_shape``.

    Parameters
    ----------
    model
        An ``nn.Sequential`` of supported layers (module docstring). Put it in eval mode.
    input_shape
        Per-sample input shape, e.g. ``(1, 28, 28)``.
    frac_bits
        ``f``, fractional bits of inputs and weights (default 16, as CrypTen).
    ring_bits
        ``l``; all values, including the ``2f``-bit products, must fit ``Z_{2^l}``'s signed
        range. The default (64, with ``f = 16``) leaves ``|x| < 2^31`` after each linear
        layer. The fast setting ``ring_bits=32, frac_bits=12`` halves the traffic and the
        memory and needs about a third less time, but leaves only ``|x| < 128`` after each
        linear layer: check a model with :func:`medshield.secure.reference.range_report`
        on sample data before using it.

    Returns
    -------
    CompiledModel

    Raises
    ------
    UnsupportedLayer
        Naming the first layer or option that cannot be evaluated and what to do instead.
    """
    ring = Ring(ring_bits)
    if not 1 <= frac_bits <= (ring_bits - 2) // 2:
        raise ValueError(
            f"frac_bits must be from 1 to {(ring_bits - 2) // 2} for a {ring_bits}-bit ring "
            f"(products carry 2*frac_bits fractional bits), got {frac_bits}"
        )
    f = frac_bits
    shape = tuple(int(s) for s in input_shape)
    x = torch.zeros((1, *shape))
    ops: list[Op] = []
    weights: dict[str, dict[str, U64]] = {}
    scale = f
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for name, mod in _leaves(model):
                if isinstance(mod, _SKIP):
                    continue
                try:
                    y = mod(x)
                except Exception as err:
                    raise UnsupportedLayer(
                        f"{name} ({type(mod).__name__}) fails on input of shape "
                        f"{tuple(x.shape[1:])}: {err}"
                    ) from err
                in_shape, out_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
                if isinstance(mod, nn.Linear | nn.Conv1d | nn.Conv2d):
                    if scale > f:
                        ops.append(GateOp(f"{name}.rescale", in_shape, in_shape, scale, f,
                                          gate="rescale", shift=scale - f))
                        scale = f
                    op, w = _linear_op(name, mod, in_shape, out_shape, scale, f, ring)
                    ops.append(op)
                    weights[name] = w
                    scale = op.out_scale
                elif isinstance(mod, nn.ReLU | Square):
                    shift = max(scale - f, 0)
                    gate = "relu" if isinstance(mod, nn.ReLU) else "square"
                    out_scale = scale - shift if gate == "relu" else 2 * (scale - shift)
                    ops.append(GateOp(name, in_shape, out_shape, scale, out_scale, gate=gate,
                                      shift=shift))
                    scale = out_scale
                elif isinstance(mod, nn.MaxPool1d | nn.MaxPool2d):
                    ops.append(_maxpool_op(name, mod, in_shape, out_shape, scale))
                elif isinstance(mod, nn.AvgPool1d | nn.AvgPool2d):
                    op_a = _avgpool_op(name, mod, in_shape, out_shape, scale, f)
                    ops.append(op_a)
                    scale = op_a.out_scale
                elif isinstance(mod, nn.Flatten | nn.Unflatten):
                    ops.append(ReshapeOp(name, in_shape, out_shape, scale, scale))
                else:
                    raise UnsupportedLayer(
                        f"{name} ({type(mod).__name__}) has no secure protocol. Supported: "
                        "Conv1d, Conv2d, Linear, ReLU, Square (medshield.models.layers), "
                        "MaxPool1d/2d, AvgPool1d/2d, Flatten, Unflatten, Identity, Dropout."
                    )
                if scale >= ring_bits - 1:
                    raise UnsupportedLayer(
                        f"after {name} the values carry {scale} fractional bits, more than a "
                        f"{ring_bits}-bit ring holds; use fewer frac_bits or ring_bits=64"
                    )
                x = y
    finally:
        model.train(was_training)
    if not ops:
        raise UnsupportedLayer("the model has no layers to evaluate")
    program = Program(tuple(ops), shape, frac_bits, ring_bits, meta={"model": type(model).__name__})
    return CompiledModel(program, weights)


def _linear_op(
    name: str,
    mod: nn.Linear | nn.Conv1d | nn.Conv2d,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    scale: int,
    f: int,
    ring: Ring,
) -> tuple[LinearOp | ConvOp, dict[str, U64]]:
    w = mod.weight.detach().cpu().double().numpy()
    out_scale = scale + f
    enc: dict[str, U64] = {}
    try:
        enc["w"] = ring.encode(w, f)
        if mod.bias is not None:
            enc["b"] = ring.encode(mod.bias.detach().cpu().double().numpy(), out_scale)
    except OverflowError as err:
        raise UnsupportedLayer(f"{name}: {err}") from err
    has_bias = mod.bias is not None
    if isinstance(mod, nn.Linear):
        if len(in_shape) != 1:
            raise _unsupported(name, mod, f"an input of shape {in_shape}",
                               "flatten to (batch, features) before the Linear layer")
        op: LinearOp | ConvOp = LinearOp(name, in_shape, out_shape, scale, out_scale,
                                         in_features=mod.in_features,
                                         out_features=mod.out_features, bias=has_bias)
        return op, enc
    dims = 1 if isinstance(mod, nn.Conv1d) else 2
    if mod.groups != 1:
        raise _unsupported(name, mod, f"groups={mod.groups}", "use groups=1")
    if any(d != 1 for d in _pair(mod.dilation, dims)):
        raise _unsupported(name, mod, f"dilation={mod.dilation}", "use dilation=1")
    if isinstance(mod.padding, str) or mod.padding_mode != "zeros":
        raise _unsupported(name, mod, f"padding={mod.padding!r} mode {mod.padding_mode!r}",
                           "use integer zero padding")
    op = ConvOp(name, in_shape, out_shape, scale, out_scale,
                in_channels=mod.in_channels, out_channels=mod.out_channels,
                kernel=_pair(mod.kernel_size, dims), stride=_pair(mod.stride, dims),
                padding=_pad_pair(mod.padding, dims), bias=has_bias, dims=dims)
    return op, enc


def _maxpool_op(
    name: str,
    mod: nn.MaxPool1d | nn.MaxPool2d,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    scale: int,
) -> MaxPoolOp:
    dims = 1 if isinstance(mod, nn.MaxPool1d) else 2
    pad = _pad_pair(mod.padding, dims)
    if any(pad) or mod.ceil_mode or mod.return_indices:
        raise _unsupported(name, mod, "padding, ceil_mode or return_indices",
                           "use padding=0, ceil_mode=False")
    if any(d != 1 for d in _pair(mod.dilation, dims)):
        raise _unsupported(name, mod, f"dilation={mod.dilation}", "use dilation=1")
    kernel = _pair(mod.kernel_size, dims)
    stride = _pair(mod.stride if mod.stride is not None else mod.kernel_size, dims)
    return MaxPoolOp(name, in_shape, out_shape, scale, scale, kernel=kernel, stride=stride,
                     dims=dims)


def _avgpool_op(
    name: str,
    mod: nn.AvgPool1d | nn.AvgPool2d,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    scale: int,
    f: int,
) -> AvgPoolOp:
    dims = 1 if isinstance(mod, nn.AvgPool1d) else 2
    kernel = _pair(mod.kernel_size, dims)
    stride = _pair(mod.stride if mod.stride is not None else mod.kernel_size, dims)
    pad = _pad_pair(mod.padding, dims)
    if mod.ceil_mode:
        raise _unsupported(name, mod, "ceil_mode=True", "use ceil_mode=False")
    if any(pad) and not mod.count_include_pad:
        raise _unsupported(name, mod, "count_include_pad=False with padding",
                           "use count_include_pad=True (a fixed divisor)")
    divisor = getattr(mod, "divisor_override", None) or kernel[0] * kernel[1]
    if divisor & (divisor - 1) == 0:
        mult, out_scale = 1, scale + int(math.log2(divisor))
    else:
        mult, out_scale = round(2**f / divisor), scale + f
    return AvgPoolOp(name, in_shape, out_shape, scale, out_scale, kernel=kernel, stride=stride,
                     padding=pad, divisor=int(divisor), multiplier=int(mult), dims=dims)
