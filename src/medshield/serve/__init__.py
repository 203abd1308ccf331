"""The coordinator's inference service (FastAPI) and its clients.

* :func:`create_app` -- the ASGI app: ``POST /v1/predict`` (raw or obfuscated samples,
  batched; API key required), ``GET /v1/info``, ``GET /healthz``
* :func:`serve` -- run it (``python -m medshield.serve --model lenet.pt``, key in
  ``$MEDSHIELD_API_KEY``); :class:`ServerThread`, :class:`ServerProcess` for tests and
  benchmarks on loopback
* :class:`InferenceClient`, :class:`DeviceClient` (obfuscates locally with one of K ObfNets
  picked at random, then calls the service)
* :func:`load_test` -- many concurrent clients, answers checked, throughput and latency

Needs the ``serve`` extra: ``pip install "medshield[serve]"`` (fastapi, uvicorn, httpx).
Names are imported lazily, so ``import medshield.serve`` works without it and the first use
says what to install.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "create_app",
    "parse_samples",
    "InputError",
    "serve",
    "load_model",
    "ServerThread",
    "ServerProcess",
    "API_KEY_ENV",
    "InferenceClient",
    "DeviceClient",
    "ServiceError",
    "load_test",
    "LoadReport",
]

_WHERE = {
    "create_app": "app",
    "parse_samples": "app",
    "InputError": "app",
    "serve": "server",
    "load_model": "server",
    "ServerThread": "server",
    "ServerProcess": "server",
    "API_KEY_ENV": "server",
    "InferenceClient": "client",
    "DeviceClient": "client",
    "ServiceError": "client",
    "load_test": "load",
    "LoadReport": "load",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'medshield.serve' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"medshield.serve.{_WHERE[name]}")
    except ImportError as err:
        raise ImportError(
            f"medshield.serve.{name} needs the serve extra ({err.name} is missing): "
            'pip install "medshield[serve]"'
        ) from err
    return getattr(module, name)
