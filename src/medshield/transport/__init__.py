"""Channels for sending tensors and messages between the parties of a protocol.

One interface, :class:`Channel` (``send(msg)``, ``recv(timeout)``, ``close()``, ``stats``),
with an in-process implementation (:class:`InProcessChannel`, for tests and simulation) and a
TCP one (:class:`TcpChannel` / :class:`TcpListener`, optionally over TLS, see
:mod:`medshield.transport.tls`). Messages are dicts of tensors, arrays and plain values,
serialised safely (no pickle) by :mod:`medshield.transport.codec`.

Example
-------
>>> import torch
>>> from medshield.transport import InProcessChannel
>>> a, b = InProcessChannel.pair()
>>> a.send({"x": torch.arange(3)})
>>> b.recv(timeout=1.0)["x"]
tensor([0, 1, 2])
>>> a.stats.rounds, b.stats.messages_received
(1, 1)
"""

from medshield.transport.base import Channel, ChannelStats
from medshield.transport.codec import DTYPES, MAX_DEPTH, decode, encode
from medshield.transport.errors import (
    ChannelClosed,
    ChannelTimeout,
    ConnectionFailed,
    FrameTooLarge,
    HandshakeFailed,
    MalformedFrame,
    MalformedMessage,
    PeerDisconnected,
    TransportError,
    UnsupportedValue,
)
from medshield.transport.framing import DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_SIZE, encode_frame
from medshield.transport.inprocess import InProcessChannel
from medshield.transport.tcp import TcpChannel, TcpListener
from medshield.transport.tls import LocalPki, client_context, generate_local_pki, server_context

__all__ = [
    "Channel",
    "ChannelStats",
    "InProcessChannel",
    "TcpChannel",
    "TcpListener",
    "encode",
    "decode",
    "encode_frame",
    "DTYPES",
    "MAX_DEPTH",
    "DEFAULT_MAX_FRAME_BYTES",
    "FRAME_HEADER_SIZE",
    "server_context",
    "client_context",
    "LocalPki",
    "generate_local_pki",
    "TransportError",
    "ChannelClosed",
    "ChannelTimeout",
    "ConnectionFailed",
    "FrameTooLarge",
    "HandshakeFailed",
    "MalformedFrame",
    "MalformedMessage",
    "PeerDisconnected",
    "UnsupportedValue",
]
