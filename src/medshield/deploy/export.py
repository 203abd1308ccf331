"""Export a model to ONNX and quantise it to int8, for the device side of ObfNet.

The paper's future work is "overhead on actual IoT hardware platforms" (Zheng et al. 2019,
section 4): an ObfNet is a couple of dense layers, so an ONNX file run by onnxruntime (or
any ONNX runtime on a microcontroller-class device) is the natural deployment. Dynamic int8
quantisation (:func:`onnxruntime.quantization.quantize_dynamic`) stores the weights as
8-bit integers, about a quarter of the fp32 size.

Requires the ``device`` extra: ``pip install "medshield[device]"`` (onnx, onnxruntime).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["require_onnx", "export_onnx", "quantize_int8", "state_dict_bytes", "parameter_bytes"]

_HINT = 'install the device extra: pip install "medshield[device]" (onnx, onnxruntime)'


def require_onnx() -> None:
    """Raise an ``ImportError`` naming the fix when onnx/onnxruntime are missing."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ImportError(f"{', '.join(missing)} not installed; {_HINT}")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_shape: tuple[int, ...] = (1, 28, 28),
    opset: int = 17,
) -> Path:
    """Write ``model`` (in eval mode, on the CPU) to an ONNX file with a dynamic batch axis.

    Parameters
    ----------
    model
        Any traceable module, e.g. :class:`~medshield.models.ObfNet2` or
        :class:`~medshield.models.LeNet5`. It is copied to the CPU for export; the original
        is left where it was.
    path
        The ``.onnx`` file to write (parent folders are created).
    input_shape
        Shape of one sample, ``(C, H, W)``. The graph takes ``(N, *input_shape)`` float32
        input ``"x"`` and returns output ``"y"``; ``N`` is dynamic.
    opset
        ONNX opset version.

    Returns
    -------
    Path
        ``path``.
    """
    require_onnx()
    import copy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).cpu().eval()
    example = torch.zeros(1, *input_shape)
    with warnings.catch_warnings():
        # torch >= 2.9 prefers the torch.export-based exporter (which needs onnxscript); the
        # TorchScript exporter handles these small static graphs and needs nothing more.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def quantize_int8(src: str | os.PathLike[str], dst: str | os.PathLike[str] | None = None) -> Path:
    """Dynamic int8 quantisation of an ONNX model (weights int8, activations quantised at run time).

    Runs onnxruntime's recommended pre-processing (shape inference, graph optimisation), then
    :func:`onnxruntime.quantization.quantize_dynamic` with signed int8 weights. Returns the
    path of the quantised file (default: ``<src stem>.int8.onnx`` beside ``src``).
    """
    require_onnx()
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = Path(src)
    out = Path(dst) if dst is not None else src.with_name(f"{src.stem}.int8.onnx")
    with tempfile.TemporaryDirectory(prefix="medshield-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
    return out


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a PyTorch checkpoint of it weighs."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of the parameters themselves (count x element size, fp32: 4 bytes each)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
