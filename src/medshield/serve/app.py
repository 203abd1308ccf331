"""The coordinator's inference service: an HTTP API (FastAPI) in front of the frozen model.

It admits raw and ObfNet-obfuscated samples alike (Zheng et al. 2019: the scheme is
voluntary, and the coordinator is not told which it got). ``POST /v1/predict`` takes a batch
of ``(N, C, H, W)`` float samples and returns the labels and class probabilities.

Security (docs/style.md, habit 10: secure by default):

* every ``/v1/`` route needs the API key, as ``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>``, compared in constant time (:func:`hmac.compare_digest` on SHA-256
  digests, so the key's length does not leak either); no credentials -> 401, a wrong key ->
  403. ``GET /healthz`` is open and says nothing but "ok".
* bad input gets a 4xx with a message that names the problem and the expected form, never a
  500, and the server keeps serving: malformed JSON (400), wrong shape, empty batch, values
  that are not numbers, NaN or infinity (422), an unsupported content type or dtype (415), a
  body over ``max_body_bytes`` or a batch over ``max_batch`` (413).
* samples are never logged, nor echoed in error messages.
* run it behind TLS outside a trusted network (``serve(..., ssl_certfile=, ssl_keyfile=)``).

Request bodies:

* ``application/json``: ``{"samples": [[[[...]]]]}``, nested lists of numbers, shape
  ``(N, C, H, W)`` (``(N, 1, 28, 28)`` for LeNet).
* ``application/octet-stream``: the samples as raw little-endian float32 in C order
  (``N * C * H * W * 4`` bytes); an optional ``X-Dtype`` header must then say ``float32``.

Requires the ``serve`` extra: ``pip install "medshield[serve]"`` (fastapi, uvicorn, httpx).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from torch import nn

__all__ = ["create_app", "InputError", "parse_samples", "DEFAULT_MAX_BODY"]

logger = logging.getLogger("medshield.serve")

#: Default limit on a request body: 8 MiB (a JSON batch of 256 MNIST samples is ~4 MB).
DEFAULT_MAX_BODY = 8 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InputError(ValueError):
    """A request body that is not a valid batch; ``status`` is the HTTP code to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


def parse_samples(
    body: bytes,
    content_type: str,
    input_shape: tuple[int, ...],
    *,
    max_batch: int,
    dtype_header: str | None = None,
) -> np.ndarray:
    """Decode and validate a request body into a float32 batch ``(N, *input_shape)``.

    Raises
    ------
    InputError
        With the HTTP status (400, 413, 415 or 422) and a message naming the problem and the
        expected form. The message never contains the sample values.
    """
    shape_txt = "(N, " + ", ".join(map(str, input_shape)) + ")"
    per_sample = math.prod(input_shape)
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/octet-stream":
        if dtype_header is not None and dtype_header.strip().lower() != "float32":
            raise InputError(
                415,
                f"X-Dtype {dtype_header.strip()[:20]!r} is not supported; "
                "send little-endian float32 samples",
            )
        if len(body) == 0 or len(body) % (4 * per_sample):
            raise InputError(
                422,
                f"binary body of {len(body)} bytes is not a whole number of "
                f"float32 samples of shape {tuple(input_shape)} "
                f"({4 * per_sample} bytes each)",
            )
        arr = np.frombuffer(body, dtype="<f4").reshape(-1, *input_shape)
    elif ctype in ("application/json", ""):
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(
                400,
                f"malformed JSON at position {getattr(err, 'pos', '?')}; "
                'send {"samples": [...]} with Content-Type: application/json',
            ) from None
        if not isinstance(doc, dict) or "samples" not in doc:
            raise InputError(
                422,
                f'the JSON body must be an object {{"samples": ...}} holding a '
                f"nested list of numbers of shape {shape_txt}",
            )
        try:
            raw = np.asarray(doc["samples"])
        except (ValueError, TypeError):
            raise InputError(
                422,
                f"samples must be a nested list of numbers of shape {shape_txt} "
                "(the lists are ragged)",
            ) from None
        if raw.dtype.kind not in "fiu":
            kind = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed or null values"}
            raise InputError(
                422,
                f"samples must be numbers (float32), got "
                f"{kind.get(raw.dtype.kind, raw.dtype.name)}",
            )
        if raw.ndim != 1 + len(input_shape) or tuple(raw.shape[1:]) != tuple(input_shape):
            raise InputError(
                422,
                f"samples have shape {tuple(raw.shape)}, expected {shape_txt}; "
                "wrap a single sample in a list",
            )
        with np.errstate(over="ignore"):
            arr = raw.astype(np.float32)
    else:
        raise InputError(
            415,
            f"Content-Type {ctype[:40]!r} is not supported; use "
            "application/json or application/octet-stream",
        )
    if len(arr) == 0:
        raise InputError(422, f"the batch is empty; send at least one sample of shape {shape_txt}")
    if len(arr) > max_batch:
        raise InputError(
            413,
            f"batch of {len(arr)} samples exceeds the limit of {max_batch}; "
            "split it into several requests",
        )
    if not np.isfinite(arr).all():
        raise InputError(
            422,
            "samples contain NaN or infinity (or values beyond float32 range); send finite numbers",
        )
    return arr


class _BodyLimit:
    """ASGI middleware: answer 413 to a body over ``limit`` bytes before anything parses it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._reject(send, receive)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(send, receive)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, receive: Receive) -> None:
        payload = json.dumps(
            {"detail": f"request body exceeds {self.limit} bytes; send smaller batches"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def create_app(
    model: nn.Module,
    *,
    api_key: str,
    input_shape: tuple[int, ...] = (1, 28, 28),
    max_batch: int = 256,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    device: str | torch.device = "cpu",
    model_name: str = "lenet5",
) -> Any:
    """The FastAPI application serving ``model`` (wrapped in the body-size limit).

    Parameters
    ----------
    model
        The coordinator's inference model (e.g. a trained :class:`~medshield.models.LeNet5`);
        put in eval mode, moved to ``device``, never updated.
    api_key
        The shared secret clients present (at least 16 characters).
    input_shape
        Shape of one sample, ``(C, H, W)``.
    max_batch, max_body_bytes
        Limits per request (413 beyond them).
    device
        Where inference runs.
    model_name
        Reported by ``GET /v1/info``.

    Returns
    -------
    An ASGI application (run it with uvicorn; see :func:`medshield.serve.serve`).
    """
    if not isinstance(api_key, str) or len(api_key) < 16:
        raise ValueError(
            "api_key must be a string of at least 16 characters; generate one "
            "with python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    dev = torch.device(device)
    net = model.to(dev).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    key_digest = _digest(api_key)
    shape = tuple(int(d) for d in input_shape)

    app = FastAPI(
        title="medshield inference service",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    def authenticate(request: Request) -> None:
        auth = request.headers.get("authorization")
        token: str | None = None
        if auth is not None:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        if token is None:
            token = request.headers.get("x-api-key")
        if not token:
            raise HTTPException(
                401,
                "missing credentials: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(_digest(token), key_digest):
            raise HTTPException(403, "invalid API key")

    def infer(arr: np.ndarray) -> dict[str, Any]:
        with torch.inference_mode():
            logits = net(torch.from_numpy(np.array(arr, dtype=np.float32)).to(dev))
            probs = torch.softmax(logits.float(), dim=1).cpu()
        return {"labels": probs.argmax(1).tolist(), "probabilities": probs.tolist()}

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default handler echoes the offending input; never echo samples.
        return JSONResponse(status_code=422, content={"detail": "invalid request"})

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error("internal error on %s: %s", request.url.path, type(exc).__name__)
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/info", dependencies=[Depends(authenticate)])
    async def info() -> dict[str, Any]:
        return {
            "model": model_name,
            "input_shape": list(shape),
            "max_batch": max_batch,
            "max_body_bytes": max_body_bytes,
            "accepts": "raw or obfuscated samples",
            "content_types": ["application/json", "application/octet-stream"],
        }

    @app.post("/v1/predict", dependencies=[Depends(authenticate)])
    async def predict(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            arr = await run_in_threadpool(
                parse_samples,
                body,
                request.headers.get("content-type", ""),
                shape,
                max_batch=max_batch,
                dtype_header=request.headers.get("x-dtype"),
            )
        except InputError as err:
            logger.info("rejected a request: %d", err.status)  # the reason only, no content
            return JSONResponse(status_code=err.status, content={"detail": str(err)})
        out = await run_in_threadpool(infer, arr)
        logger.debug("answered a batch of %d", len(arr))
        return JSONResponse(content=out)

    return _BodyLimit(app, max_body_bytes)
