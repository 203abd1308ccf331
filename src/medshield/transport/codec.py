"""Safe serialisation of messages: a JSON header plus raw little-endian buffers, never pickle.

A *message* is a ``dict[str, Any]`` whose values are ``torch.Tensor``, ``np.ndarray``, numpy
scalars, ``int``, ``float``, ``str``, ``bool``, ``None``, ``bytes`` (``bytearray`` and
``memoryview`` are sent as ``bytes``), and lists, tuples and dicts (keys ``str`` or ``int``)
of these, nested at most :data:`MAX_DEPTH` levels.

Threat model
------------
The peer is untrusted: a network peer must not be able to execute code, exhaust memory
beyond the frame it sent, or crash the receiver with anything but :class:`MalformedMessage`.
Decoding therefore never calls pickle or constructs arbitrary classes; it checks that the
header is well formed, every dtype is in :data:`DTYPES`, every shape is a short list of
non-negative ints, every buffer length equals ``prod(shape) * itemsize``, boolean buffers
hold only 0/1, the nesting depth is bounded, and no bytes are left over.

Payload layout (all integers little-endian)::

    u32 header_len | header (ASCII JSON, header_len bytes) | buffer_0 | buffer_1 | ...

The header is ``{"root": node}`` where a node is one of ``{"t": "none"}``,
``{"t": "bool"|"int"|"str", "v": value}``, ``{"t": "float", "v": float.hex()}``,
``{"t": "bytes", "n": nbytes}``, ``{"t": "tensor"|"ndarray", "d": dtype, "s": shape}``,
``{"t": "npscalar", "d": dtype}``, ``{"t": "list"|"tuple", "v": [node, ...]}`` or
``{"t": "dict", "v": [[key, node], ...]}``. Buffers follow in depth-first order.

Tensors are detached, moved to the CPU and made contiguous on encode; they decode as CPU
tensors with the same dtype and shape (autograd state is not carried; move them to your
device with :func:`medshield.runtime.get_device`). Decoded arrays and tensors own their
memory (they are copies, never views of the receive buffer).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import torch

from medshield.transport.errors import MalformedMessage, UnsupportedValue

__all__ = ["DTYPES", "MAX_DEPTH", "MAX_NDIM", "MAX_INT_BITS", "encode", "encode_parts", "decode"]

MAX_DEPTH = 32
"""Maximum nesting of lists/tuples/dicts (the message dict itself is level 1)."""
MAX_NDIM = 32
"""Maximum number of dimensions of a tensor or array."""
MAX_INT_BITS = 8192
"""Largest Python ``int`` magnitude (in bits) carried in the header; use bytes beyond that."""

_NUMPY_NAMES = (
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "float32", "float64", "complex64", "complex128",
)  # fmt: skip
_NP: dict[str, np.dtype[Any]] = {n: np.dtype(n).newbyteorder("<") for n in _NUMPY_NAMES}
_TORCH: dict[str, torch.dtype] = {n: getattr(torch, n) for n in _NUMPY_NAMES}
_TORCH["bfloat16"] = torch.bfloat16  # carried as int16 bit patterns
DTYPES: frozenset[str] = frozenset(_TORCH)
"""The dtype whitelist (``bfloat16`` for tensors only)."""

_HEADER_LEN = struct.Struct("<I")
_NODE_KEYS: dict[str, frozenset[str]] = {
    "none": frozenset({"t"}),
    "bool": frozenset({"t", "v"}),
    "int": frozenset({"t", "v"}),
    "float": frozenset({"t", "v"}),
    "str": frozenset({"t", "v"}),
    "bytes": frozenset({"t", "n"}),
    "tensor": frozenset({"t", "d", "s"}),
    "ndarray": frozenset({"t", "d", "s"}),
    "npscalar": frozenset({"t", "d"}),
    "list": frozenset({"t", "v"}),
    "tuple": frozenset({"t", "v"}),
    "dict": frozenset({"t", "v"}),
}
_SUPPORTED = (
    "send tensors, numpy arrays, int, float, str, bool, None, bytes, or lists/tuples/dicts "
    "(str or int keys) of these"
)


_FIX = (
    "the sender runs an incompatible encoder or the data was corrupted in transit "
    "(check that both ends run the same medshield version)"
)


def _malformed(what: str) -> MalformedMessage:
    return MalformedMessage(f"malformed message: {what}; {_FIX}")


def _key_repr(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 40 else text[:37] + "..."


# ----------------------------------------------------------------------------- encoding


class _Encoder:
    def __init__(self) -> None:
        self.buffers: list[Any] = []

    def array(self, a: np.ndarray, path: str, tag: str) -> dict[str, Any]:
        name = a.dtype.name
        if name not in _NP or a.dtype.fields is not None:
            raise UnsupportedValue(
                f"cannot encode {path}: numpy dtype {a.dtype.str!r} is not in the whitelist "
                f"{sorted(_NUMPY_NAMES)}; convert it with .astype(...) first"
            )
        shape = [int(d) for d in a.shape]
        if len(shape) > MAX_NDIM:
            raise UnsupportedValue(
                f"cannot encode {path}: {len(shape)} dims, more than {MAX_NDIM}; reshape it"
            )
        flat = np.ascontiguousarray(a, dtype=_NP[name]).reshape(-1)  # little-endian, C order
        self.buffers.append(flat.view(np.uint8))
        return {"t": tag, "d": name} if tag == "npscalar" else {"t": tag, "d": name, "s": shape}

    def tensor(self, t: torch.Tensor, path: str) -> dict[str, Any]:
        name = str(t.dtype).removeprefix("torch.")
        if name not in _TORCH:
            raise UnsupportedValue(
                f"cannot encode {path}: tensor dtype {t.dtype} is not in the whitelist "
                f"{sorted(DTYPES)}; convert it with .to(...) first"
            )
        if t.layout != torch.strided or t.is_meta:
            raise UnsupportedValue(
                f"cannot encode {path}: only dense tensors with data are supported "
                f"(got layout {t.layout}, meta={t.is_meta}); call .to_dense() first"
            )
        t = t.detach().cpu().resolve_conj().resolve_neg().contiguous()
        shape = list(t.shape)
        arr = (t.view(torch.int16) if name == "bfloat16" else t).numpy()
        node = self.array(arr, path, "tensor")
        node["d"], node["s"] = name, shape
        return node

    def node(self, v: Any, path: str, depth: int) -> dict[str, Any]:
        if v is None:
            return {"t": "none"}
        if isinstance(v, np.generic):  # before float: np.float64 subclasses float
            return self.array(np.asarray(v), path, "npscalar")
        if isinstance(v, bool):
            return {"t": "bool", "v": v}
        if isinstance(v, int):
            if abs(v).bit_length() > MAX_INT_BITS:
                raise UnsupportedValue(
                    f"cannot encode {path}: int of {abs(v).bit_length()} bits exceeds "
                    f"{MAX_INT_BITS} bits; send it as bytes (v.to_bytes(...))"
                )
            return {"t": "int", "v": int(v)}
        if isinstance(v, float):
            return {"t": "float", "v": float(v).hex()}
        if isinstance(v, str):
            return {"t": "str", "v": str(v)}
        if isinstance(v, bytes | bytearray | memoryview):
            data: Any = v
            if isinstance(v, memoryview):
                data = v.cast("B") if v.c_contiguous else v.tobytes()
            self.buffers.append(data)
            return {"t": "bytes", "n": len(data)}
        if isinstance(v, torch.Tensor):
            return self.tensor(v, path)
        if isinstance(v, np.ndarray):
            return self.array(v, path, "ndarray")
        if isinstance(v, list | tuple | dict):
            if depth >= MAX_DEPTH:
                raise UnsupportedValue(
                    f"cannot encode {path}: nesting deeper than {MAX_DEPTH} levels (a cyclic "
                    "structure?); flatten the message"
                )
            if isinstance(v, dict):
                items = []
                for key, val in v.items():
                    if isinstance(key, bool) or not isinstance(key, str | int):
                        raise UnsupportedValue(
                            f"cannot encode {path}: dict key of type {type(key).__qualname__}; "
                            "use str or int keys"
                        )
                    items.append([key, self.node(val, f"{path}[{_key_repr(key)}]", depth + 1)])
                return {"t": "dict", "v": items}
            tag = "list" if isinstance(v, list) else "tuple"
            return {
                "t": tag,
                "v": [self.node(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)],
            }
        raise UnsupportedValue(
            f"cannot encode {path}: values of type {type(v).__qualname__} are not supported; "
            f"{_SUPPORTED} (convert other objects first, e.g. with .tolist() or a dict of fields)"
        )


def encode_parts(msg: dict[str, Any]) -> list[Any]:
    """Encode ``msg`` into a list of bytes-like parts whose concatenation is the payload.

    Large buffers are not copied (the parts are views of the tensors' CPU memory), so join
    them before the message is mutated. :func:`encode` joins them for you.

    Raises
    ------
    UnsupportedValue
        If ``msg`` is not a dict with str keys or holds a value that cannot be encoded.
    """
    if not isinstance(msg, dict):
        raise UnsupportedValue(
            f"a message must be a dict[str, Any], got {type(msg).__qualname__}; "
            "wrap the value, e.g. {'x': value}"
        )
    for key in msg:
        if not isinstance(key, str):
            raise UnsupportedValue(
                f"message keys must be str, got a key of type {type(key).__qualname__}; "
                "use str keys at the top level (nested dicts may use int keys)"
            )
    enc = _Encoder()
    root = enc.node(msg, "msg", 0)
    header = json.dumps({"root": root}, separators=(",", ":"), allow_nan=False).encode("ascii")
    return [_HEADER_LEN.pack(len(header)), header, *enc.buffers]


def encode(msg: dict[str, Any]) -> bytes:
    """Encode a message into one payload (see the module docstring for the layout)."""
    return b"".join(encode_parts(msg))


# ----------------------------------------------------------------------------- decoding


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Decoder:
    def __init__(self, mv: memoryview, offset: int) -> None:
        self.mv = mv
        self.offset = offset

    @staticmethod
    def bad(path: str, what: str) -> MalformedMessage:
        return _malformed(f"at {path}: {what}")

    def take(self, n: int, path: str) -> memoryview:
        left = len(self.mv) - self.offset
        if n > left:
            raise self.bad(path, f"needs a {n}-byte buffer but only {left} bytes remain")
        out = self.mv[self.offset : self.offset + n]
        self.offset += n
        return out

    def array(self, n: dict[str, Any], path: str) -> Any:
        tag, name = n["t"], n["d"]
        allowed = _TORCH if tag == "tensor" else _NP
        if not isinstance(name, str) or name not in allowed:
            raise self.bad(path, f"{tag} dtype is not one of {sorted(allowed)}")
        shape = n.get("s", [])
        if not isinstance(shape, list) or len(shape) > MAX_NDIM:
            raise self.bad(path, f"shape must be a list of at most {MAX_NDIM} ints")
        if not all(_is_int(d) and d >= 0 for d in shape):
            raise self.bad(path, "shape entries must be non-negative ints")
        np_dtype = _NP["int16" if name == "bfloat16" else name]
        count = math.prod(shape)
        buf = self.take(count * np_dtype.itemsize, path)
        if name == "bool" and count and int(np.frombuffer(buf, np.uint8).max()) > 1:
            raise self.bad(path, "bool buffer holds bytes other than 0 and 1")
        arr = np.frombuffer(buf, dtype=np_dtype, count=count)
        arr = arr.astype(np_dtype.newbyteorder("="), copy=True).reshape(shape)
        if tag == "ndarray":
            return arr
        if tag == "npscalar":
            return arr[()]
        t = torch.from_numpy(arr)
        return t.view(torch.bfloat16) if name == "bfloat16" else t

    def node(self, n: Any, path: str, depth: int) -> Any:
        if not isinstance(n, dict) or not isinstance(n.get("t"), str):
            raise self.bad(path, "a node must be a JSON object with a string 't'")
        tag = n["t"]
        keys = _NODE_KEYS.get(tag)
        if keys is None:
            raise self.bad(path, f"unknown node type (expected one of {sorted(_NODE_KEYS)})")
        if set(n) != keys:
            raise self.bad(path, f"a {tag!r} node must have exactly the keys {sorted(keys)}")
        v = n.get("v")
        if tag == "none":
            return None
        if tag == "bool":
            if not isinstance(v, bool):
                raise self.bad(path, "bool node value is not a JSON boolean")
            return v
        if tag == "int":
            if not _is_int(v):
                raise self.bad(path, "int node value is not a JSON integer")
            return v
        if tag == "float":
            if not isinstance(v, str):
                raise self.bad(path, "float node value is not a hex string")
            try:
                return float.fromhex(v)
            except (ValueError, OverflowError):
                raise self.bad(path, "float node value is not a valid float.hex() string") from None
        if tag == "str":
            if not isinstance(v, str):
                raise self.bad(path, "str node value is not a JSON string")
            return v
        if tag == "bytes":
            if not (_is_int(n["n"]) and n["n"] >= 0):
                raise self.bad(path, "bytes length is not a non-negative int")
            return bytes(self.take(n["n"], path))
        if tag in ("tensor", "ndarray", "npscalar"):
            return self.array(n, path)
        # containers
        if depth >= MAX_DEPTH:
            raise self.bad(path, f"nesting deeper than {MAX_DEPTH} levels")
        if not isinstance(v, list):
            raise self.bad(path, f"{tag} node value is not a JSON array")
        if tag != "dict":
            items = [self.node(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]
            return items if tag == "list" else tuple(items)
        out: dict[Any, Any] = {}
        for pair in v:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise self.bad(path, "dict items must be [key, node] pairs")
            key = pair[0]
            if not (isinstance(key, str) or _is_int(key)):
                raise self.bad(path, "dict keys must be str or int")
            if key in out:
                raise self.bad(path, f"duplicate dict key {_key_repr(key)}")
            out[key] = self.node(pair[1], f"{path}[{_key_repr(key)}]", depth + 1)
        return out


def _decode(mv: memoryview) -> dict[str, Any]:
    if len(mv) < _HEADER_LEN.size:
        raise _malformed(
            f"payload of {len(mv)} bytes is shorter than the 4-byte header length (truncated?)"
        )
    (hlen,) = _HEADER_LEN.unpack_from(mv, 0)
    if hlen > len(mv) - _HEADER_LEN.size:
        raise _malformed(
            f"header declares {hlen} bytes but the payload holds only "
            f"{len(mv) - _HEADER_LEN.size} after the length field (truncated?)"
        )
    start = _HEADER_LEN.size
    try:
        text = bytes(mv[start : start + hlen]).decode("ascii")
        header = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_pairs)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _malformed(
            f"the {hlen}-byte header is not valid ASCII JSON ({type(exc).__name__})"
        ) from None
    if not isinstance(header, dict) or set(header) != {"root"}:
        raise _malformed("header must be a JSON object {'root': node}")
    root = header["root"]
    if not isinstance(root, dict) or root.get("t") != "dict":
        raise _malformed("the root node must be a dict node")
    dec = _Decoder(mv, start + hlen)
    msg = dec.node(root, "msg", 0)
    if not all(isinstance(k, str) for k in msg):
        raise _malformed("top-level message keys must be str")
    if dec.offset != len(mv):
        raise _malformed(
            f"{len(mv) - dec.offset} bytes left over after the last buffer (the header does "
            "not describe the payload)"
        )
    return msg


def decode(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode a payload produced by :func:`encode`, validating everything.

    Raises
    ------
    MalformedMessage
        For any payload that is not a well-formed message; never any other exception.
    """
    try:
        mv = memoryview(data)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
        return _decode(mv)
    except MalformedMessage:
        raise
    except Exception as exc:  # defence in depth: a validation gap must not leak other errors
        raise _malformed(f"decoding failed ({type(exc).__name__})") from None
