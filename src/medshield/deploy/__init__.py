"""Deployment of device-side models: ONNX export, int8 quantisation and an onnxruntime runner.

Needs the ``device`` extra (``pip install "medshield[device]"``: onnx, onnxruntime); the
functions raise an ``ImportError`` naming that fix when it is missing.

* :func:`export_onnx` -- a module to an ONNX file with a dynamic batch axis
* :func:`quantize_int8` -- dynamic int8 quantisation (onnxruntime.quantization)
* :class:`OnnxModel` -- an onnxruntime session (one thread by default) callable like the module
* :func:`state_dict_bytes`, :func:`parameter_bytes` -- how much a model weighs
"""

from medshield.deploy.export import (
    export_onnx,
    parameter_bytes,
    quantize_int8,
    require_onnx,
    state_dict_bytes,
)
from medshield.deploy.runtime import OnnxModel

__all__ = [
    "export_onnx",
    "quantize_int8",
    "OnnxModel",
    "require_onnx",
    "state_dict_bytes",
    "parameter_bytes",
]
