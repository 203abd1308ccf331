"""Length-prefixed frames: the unit every channel sends, counts and limits.

A frame is a 16-byte header followed by the payload of :mod:`medshield.transport.codec`::

    magic b"MDSH" (4) | version u16 (2) | flags u16 (2, reserved, 0) | payload length u64 (8)

(all little-endian). The in-process channel sends the very same bytes as TCP, so byte
counts in :class:`~medshield.transport.base.ChannelStats` are identical for both. The
``max_frame_bytes`` limit applies to the whole frame (header + payload); on receive it is
checked against the *declared* length before any buffer is allocated.
"""

from __future__ import annotations

import struct
from typing import Any

from medshield.transport.codec import encode_parts
from medshield.transport.errors import FrameTooLarge, MalformedFrame

__all__ = [
    "MAGIC",
    "VERSION",
    "FRAME_HEADER_SIZE",
    "DEFAULT_MAX_FRAME_BYTES",
    "encode_frame",
    "parse_frame_header",
    "describe_foreign_bytes",
]

MAGIC = b"MDSH"
VERSION = 1
_HEADER = struct.Struct("<4sHHQ")
FRAME_HEADER_SIZE = _HEADER.size  # 16
DEFAULT_MAX_FRAME_BYTES = 256 * 2**20
_HTTP_PREFIXES = (b"GET ", b"POST", b"PUT ", b"HEAD", b"HTTP", b"DELE", b"OPTI", b"PATC", b"CONN")


def _too_large(size: int, max_frame_bytes: int, where: str) -> FrameTooLarge:
    return FrameTooLarge(
        f"{where} a frame of {size} bytes, more than max_frame_bytes={max_frame_bytes}; "
        "split the message into smaller ones or raise max_frame_bytes on both ends"
    )


def encode_frame(msg: dict[str, Any], max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """Encode ``msg`` into one complete frame (header + payload).

    Raises
    ------
    UnsupportedValue
        If the message cannot be encoded.
    FrameTooLarge
        If the frame would exceed ``max_frame_bytes`` (nothing is sent).
    """
    parts = encode_parts(msg)
    length = sum(memoryview(p).nbytes for p in parts)
    if FRAME_HEADER_SIZE + length > max_frame_bytes:
        raise _too_large(FRAME_HEADER_SIZE + length, max_frame_bytes, "refusing to send")
    return b"".join([_HEADER.pack(MAGIC, VERSION, 0, length), *parts])


def describe_foreign_bytes(prefix: bytes) -> str:
    """Guess which protocol a non-medshield stream speaks, without quoting its bytes."""
    if prefix.startswith(_HTTP_PREFIXES):
        return (
            "the peer speaks HTTP, not the medshield frame protocol; point HTTP clients at "
            "the HTTP service, not at this port"
        )
    if len(prefix) >= 2 and prefix[0] in (0x14, 0x15, 0x16, 0x17) and prefix[1] == 0x03:
        return (
            "the peer speaks TLS but this end is plaintext; pass a matching ssl_context on both "
            "ends (see medshield.transport.tls)"
        )
    if prefix.startswith(b"SSH-"):
        return "the peer speaks SSH; check the host and port"
    return (
        "unknown protocol or a stream that lost frame alignment; check that the peer is a "
        "medshield channel on the right host and port"
    )


def parse_frame_header(header: bytes, max_frame_bytes: int, peer: str = "peer") -> int:
    """Validate a 16-byte frame header and return the payload length.

    Raises
    ------
    MalformedFrame
        Wrong magic (with a guess of what the peer speaks), unknown version or flags.
    FrameTooLarge
        If the declared frame size exceeds ``max_frame_bytes``.
    """
    if len(header) != FRAME_HEADER_SIZE:
        raise MalformedFrame(
            f"frame from {peer} has a {len(header)}-byte header, expected {FRAME_HEADER_SIZE}"
        )
    magic, version, flags, length = _HEADER.unpack(header)
    if magic != MAGIC:
        raise MalformedFrame(f"bad frame magic from {peer}: {describe_foreign_bytes(header)}")
    if version != VERSION:
        raise MalformedFrame(
            f"frame from {peer} uses protocol version {version}, this end speaks {VERSION}; "
            "run the same medshield version on both ends"
        )
    if flags != 0:
        raise MalformedFrame(
            f"frame from {peer} sets reserved flags {flags:#06x}; the peer runs an "
            "incompatible medshield version or the stream is corrupted"
        )
    if FRAME_HEADER_SIZE + length > max_frame_bytes:
        raise _too_large(FRAME_HEADER_SIZE + length, max_frame_bytes, f"{peer} announced")
    return int(length)
