"""Clients of the inference service: a plain one, and the device client that obfuscates first.

:class:`DeviceClient` is the participant of Zheng et al. 2019 (section 3.2) over HTTP: each
sample goes through one of the K ObfNets, picked at random on the device (OS randomness by
default, see :class:`~medshield.defenses.obfnet.Participant`), and only the obfuscated
sample leaves; which ObfNet was used is never sent.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
import numpy as np
import torch

from medshield.defenses.obfnet import Participant

__all__ = ["ServiceError", "InferenceClient", "DeviceClient", "encode_json", "encode_binary"]


class ServiceError(RuntimeError):
    """The service refused a request; ``status`` is the HTTP code, the message its reason."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _as_array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def encode_json(x: np.ndarray | torch.Tensor) -> tuple[bytes, dict[str, str]]:
    """A JSON request body ``{"samples": ...}`` and its headers."""
    import json

    return (
        json.dumps({"samples": _as_array(x).tolist()}).encode(),
        {"Content-Type": "application/json"},
    )


def encode_binary(x: np.ndarray | torch.Tensor) -> tuple[bytes, dict[str, str]]:
    """A raw little-endian float32 request body and its headers."""
    return (
        _as_array(x).astype("<f4").tobytes(),
        {"Content-Type": "application/octet-stream", "X-Dtype": "float32"},
    )


def _decode(response: httpx.Response) -> tuple[np.ndarray, np.ndarray]:
    if response.status_code != 200:
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text[:200]
        raise ServiceError(response.status_code, detail)
    doc = response.json()
    return np.asarray(doc["labels"], dtype=np.int64), np.asarray(doc["probabilities"])


class InferenceClient:
    """Send batches to ``POST /v1/predict`` with a bearer token.

    Parameters
    ----------
    url
        Base URL of the service (``http://127.0.0.1:8000``; use ``https://`` off loopback).
    api_key
        The service's API key (sent as ``Authorization: Bearer``).
    timeout
        Seconds per request.
    binary
        Send raw float32 instead of JSON (about 5x smaller).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        binary: bool = False,
        verify: bool | str = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.binary = binary
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            verify=verify,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def predict(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Labels ``(N,)`` and probabilities ``(N, K)`` of a batch ``(N, C, H, W)``."""
        body, headers = (encode_binary if self.binary else encode_json)(x)
        return _decode(self._http.post("/v1/predict", content=body, headers=headers))

    def info(self) -> dict[str, Any]:
        """The service's ``/v1/info`` (model, input shape, limits)."""
        r = self._http.get("/v1/info")
        if r.status_code != 200:
            raise ServiceError(r.status_code, r.text[:200])
        return dict(r.json())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DeviceClient:
    """A participant that obfuscates locally, then asks the service.

    Parameters
    ----------
    client
        The connection to the coordinator's service.
    participant
        Holds the K ObfNets (``nn.Module`` or :class:`~medshield.deploy.OnnxModel`) and draws
        the choice per sample (``p_raw`` > 0: some samples go raw, voluntarily).
    """

    def __init__(self, client: InferenceClient, participant: Participant) -> None:
        self.client = client
        self.participant = participant

    def predict(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Obfuscate each sample with a randomly chosen ObfNet, send, return labels and probs."""
        xt = torch.as_tensor(_as_array(x))
        sent, _choice = self.participant.obfuscate(xt)  # the choice stays on the device
        return self.client.predict(sent)
