"""Run an exported ONNX model with onnxruntime, single-threaded by default (a device's view).

Requires the ``device`` extra: ``pip install "medshield[device]"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from medshield.deploy.export import require_onnx

__all__ = ["OnnxModel"]


class OnnxModel:
    """An onnxruntime session that behaves like the module it was exported from.

    Calling it with a torch tensor returns a torch tensor (on the CPU), with a NumPy array
    returns an array, so it can stand in for an ObfNet in
    :class:`~medshield.defenses.obfnet.Participant`.

    Parameters
    ----------
    path
        The ``.onnx`` file (from :func:`~medshield.deploy.export.export_onnx`, optionally
        :func:`~medshield.deploy.export.quantize_int8`).
    threads
        Intra-op threads of the session (1: one core, as on a small device). Inter-op
        parallelism is off.

    Shapes
    ------
    ``(N, *input_shape)`` float32 -> the model's output for the batch.
    """

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 1) -> None:
        require_onnx()
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no ONNX file; export one with export_onnx()")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.threads = threads
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    @property
    def size_bytes(self) -> int:
        """Size of the ONNX file in bytes."""
        return self.path.stat().st_size

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run on a float32 array ``(N, ...)``; returns the first output."""
        arr = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: arr})[0]  # type: ignore[no-any-return]

    @overload
    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    @overload
    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def __call__(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return torch.from_numpy(self.run(x.detach().cpu().numpy()))
        return self.run(np.asarray(x))

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, threads={self.threads})"
