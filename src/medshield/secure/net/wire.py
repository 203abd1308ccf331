"""A numpy-only client for the medshield frame protocol, for the sensor.

The sensor (PE-HEALTH's health-monitoring sensor) is a lightweight device: it must not need
torch. :mod:`medshield.transport` imports torch (its codec carries tensors), so this module
re-implements the subset of the wire format the sensor speaks -- messages of ``None``,
``bool``, ``int``, ``float``, ``str``, ``bytes``, numpy arrays and lists/tuples/dicts of
them -- byte for byte as :mod:`medshield.transport.codec` and
:mod:`medshield.transport.framing` define it (the tests check both directions against
them). Decoding is as strict as the codec's: whitelisted dtypes, exact buffer lengths, no
pickle, bounded nesting.

:class:`WireConnection` is a blocking TCP (optionally TLS) connection sending and receiving
such frames.
"""

from __future__ import annotations

import json
import math
import socket
import ssl
import struct
from typing import Any

import numpy as np

__all__ = ["WireError", "encode_message", "decode_message", "encode_frame", "WireConnection"]

_FRAME = struct.Struct("<4sHHQ")
_MAGIC, _VERSION = b"MDSH", 1
_LEN = struct.Struct("<I")
_DTYPES = frozenset({
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "float32", "float64",
})  # fmt: skip
_MAX_DEPTH = 32
MAX_FRAME_BYTES = 256 * 2**20


class WireError(ConnectionError):
    """A frame could not be sent, received or decoded (the message says which and why)."""


def _node(v: Any, bufs: list[bytes], depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise WireError("message nested too deeply; flatten it")
    if v is None:
        return {"t": "none"}
    if isinstance(v, bool):
        return {"t": "bool", "v": v}
    if isinstance(v, int | np.integer) and not isinstance(v, np.ndarray):
        return {"t": "int", "v": int(v)}
    if isinstance(v, float):
        return {"t": "float", "v": v.hex()}
    if isinstance(v, str):
        return {"t": "str", "v": v}
    if isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        bufs.append(b)
        return {"t": "bytes", "n": len(b)}
    if isinstance(v, np.ndarray):
        if v.dtype.name not in _DTYPES:
            raise WireError(f"cannot send dtype {v.dtype}; use one of {sorted(_DTYPES)}")
        bufs.append(np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")).tobytes())
        return {"t": "ndarray", "d": v.dtype.name, "s": [int(d) for d in v.shape]}
    if isinstance(v, dict):
        return {"t": "dict", "v": [[k, _node(x, bufs, depth + 1)] for k, x in v.items()]}
    if isinstance(v, list | tuple):
        tag = "list" if isinstance(v, list) else "tuple"
        return {"t": tag, "v": [_node(x, bufs, depth + 1) for x in v]}
    raise WireError(f"cannot send a value of type {type(v).__name__}")


def encode_message(msg: dict[str, Any]) -> bytes:
    """The codec payload of ``msg`` (identical to :func:`medshield.transport.encode`)."""
    bufs: list[bytes] = []
    root = _node(msg, bufs, 1)
    head = json.dumps({"root": root}, separators=(",", ":"), allow_nan=False).encode("ascii")
    return b"".join([_LEN.pack(len(head)), head, *bufs])


def encode_frame(msg: dict[str, Any]) -> bytes:
    """Frame header + payload (identical to :func:`medshield.transport.encode_frame`)."""
    payload = encode_message(msg)
    return _FRAME.pack(_MAGIC, _VERSION, 0, len(payload)) + payload


class _Reader:
    def __init__(self, data: bytes, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, n: int) -> bytes:
        if n < 0 or self.offset + n > len(self.data):
            raise WireError("malformed message: a buffer runs past the end of the frame")
        out = self.data[self.offset : self.offset + n]
        self.offset += n
        return out

    def node(self, n: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH or not isinstance(n, dict) or not isinstance(n.get("t"), str):
            raise WireError("malformed message: bad node")
        t, v = n["t"], n.get("v")
        if t == "none":
            return None
        if t in ("bool", "int", "str"):
            want = {"bool": bool, "int": int, "str": str}[t]
            if not isinstance(v, want) or (t == "int" and isinstance(v, bool)):
                raise WireError(f"malformed message: bad {t} value")
            return v
        if t == "float":
            try:
                return float.fromhex(str(v))
            except (ValueError, OverflowError):
                raise WireError("malformed message: bad float value") from None
        if t == "bytes":
            return self.take(int(n.get("n", -1)))
        if t in ("ndarray", "tensor", "npscalar"):
            name, shape = n.get("d"), n.get("s", [])
            if name not in _DTYPES or not isinstance(shape, list):
                raise WireError("malformed message: array dtype not supported by the sensor")
            if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
                raise WireError("malformed message: bad array shape")
            dt = np.dtype(name).newbyteorder("<")
            arr = np.frombuffer(self.take(math.prod(shape) * dt.itemsize), dtype=dt)
            arr = arr.astype(dt.newbyteorder("="), copy=True).reshape(shape)
            return arr[()] if t == "npscalar" else arr
        if t in ("list", "tuple") and isinstance(v, list):
            items = [self.node(x, depth + 1) for x in v]
            return items if t == "list" else tuple(items)
        if t == "dict" and isinstance(v, list):
            out: dict[Any, Any] = {}
            for pair in v:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise WireError("malformed message: bad dict item")
                out[pair[0]] = self.node(pair[1], depth + 1)
            return out
        raise WireError(f"malformed message: unknown node type {t[:20]!r}")


def decode_message(payload: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_message` (for the subset above)."""
    if len(payload) < _LEN.size:
        raise WireError("malformed message: truncated payload")
    (hlen,) = _LEN.unpack_from(payload)
    try:
        head = json.loads(payload[_LEN.size : _LEN.size + hlen].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("malformed message: the header is not JSON") from None
    reader = _Reader(payload, _LEN.size + hlen)
    msg = reader.node(head.get("root") if isinstance(head, dict) else None, 1)
    if reader.offset != len(payload) or not isinstance(msg, dict):
        raise WireError("malformed message: trailing bytes or a root that is not a dict")
    return msg


class WireConnection:
    """A blocking connection to a medshield listener (the sensor's side).

    Parameters
    ----------
    host, port
        The listener.
    ssl_context
        Client TLS context (mutual TLS: it holds the sensor's certificate).
    timeout
        Seconds for connecting, each send and each receive.
    """

    def __init__(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.peer = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise WireError(
                f"cannot connect to {self.peer} ({exc.strerror or type(exc).__name__}); is the "
                "compute server running there?"
            ) from None
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
            except (ssl.SSLError, OSError) as exc:
                sock.close()
                raise WireError(
                    f"TLS handshake with {self.peer} failed ({getattr(exc, 'reason', None) or exc}); "
                    "check that this party's certificate was issued by the deployment's CA"
                ) from None
        sock.settimeout(timeout)
        self.sock = sock

    def send(self, msg: dict[str, Any]) -> None:
        """Send one message."""
        self.send_raw(encode_frame(msg))

    def send_raw(self, data: bytes) -> None:
        """Send raw bytes (for tests of malformed input)."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise WireError(f"sending to {self.peer} failed ({type(exc).__name__})") from None

    def _read(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            try:
                data = self.sock.recv(min(n - got, 1 << 20))
            except TimeoutError:
                raise WireError(f"no reply from {self.peer} in time") from None
            except OSError as exc:
                raise WireError(f"connection to {self.peer} broke ({type(exc).__name__})") from None
            if not data:
                raise WireError(
                    f"{self.peer} closed the connection (it refused this party, or stopped)"
                )
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    def recv(self) -> dict[str, Any]:
        """Receive one message."""
        magic, version, flags, length = _FRAME.unpack(self._read(_FRAME.size))
        if magic != _MAGIC or version != _VERSION or flags != 0 or length > MAX_FRAME_BYTES:
            raise WireError(f"{self.peer} does not speak the medshield frame protocol")
        return decode_message(self._read(length))

    def close(self) -> None:
        """Close the connection."""
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> WireConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
