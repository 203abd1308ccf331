"""Parsing helpers of :mod:`.server`: weight shares, material headers, the centre's address."""

from __future__ import annotations

from typing import Any

import numpy as np

from medshield.secure.engine import ModelShare
from medshield.secure.net.credentials import peer_name
from medshield.secure.net.messages import ProtocolError
from medshield.secure.program import ConvOp, LinearOp, Program
from medshield.secure.ring import Ring

__all__ = ["model_share", "material_header", "centre_address", "channel_party"]

_MATERIAL_MAGIC = b"MSDM1"


def model_share(program: Program, party: int, weights: dict[str, Any]) -> ModelShare:
    """Check and wrap the weight shares of a ``deploy`` message (names, dtypes, sizes)."""
    ring = Ring(program.ring_bits)
    layers: dict[str, dict[str, np.ndarray]] = {}
    for op in program.ops:
        if not isinstance(op, LinearOp | ConvOp):
            continue
        got = weights.get(op.name)
        if not isinstance(got, dict) or not isinstance(got.get("w"), np.ndarray):
            raise ProtocolError("deploy", f"weight shares of layer {op.name!r} are missing")
        layer = {}
        for k in ("w", "b"):
            arr = got.get(k)
            if arr is None:
                continue
            if not isinstance(arr, np.ndarray) or arr.dtype != ring.dtype:
                raise ProtocolError("deploy", f"weight share {op.name}.{k} must be a "
                                    f"{ring.dtype} array")
            layer[k] = arr
        layers[op.name] = layer
    return ModelShare(program.fingerprint(), party, layers)


def material_header(blob: Any) -> tuple[str, int, int]:
    """``(program fingerprint, party, batch size)`` of serialised dealer material."""
    if not isinstance(blob, bytes) or not blob.startswith(_MATERIAL_MAGIC) or len(blob) < 8:
        raise ProtocolError("material", "a material blob is not medshield dealer material")
    n = int.from_bytes(blob[6:8], "little")
    try:
        fp, party, batch, _bits, _nops = blob[8 : 8 + n].decode().split("|")
        return fp, int(party), int(batch)
    except ValueError:
        raise ProtocolError("material", "a material blob has a malformed header") from None


def centre_address(value: Any) -> tuple[str, int]:
    """The centre's ``host:port`` from a deploy message."""
    from medshield.secure.net.server import parse_address

    try:
        return parse_address(str(value))
    except ValueError as exc:
        raise ProtocolError("deploy", str(exc)) from None


def channel_party(channel: Any) -> str:
    """The registered name (certificate CN) of the party at the other end of ``channel``."""
    return peer_name(channel._sock)
