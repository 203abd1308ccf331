"""Errors raised by :mod:`medshield.transport`.

Every error says what happened and what to do about it. None of them ever quotes message
contents: a payload may hold secret shares, model updates or patient data, so errors name
only structure (paths, types, dtypes, shapes, sizes) and endpoints (host:port).

Stream state after an error
---------------------------
* :class:`ChannelTimeout` on ``recv`` and :class:`MalformedMessage` leave the channel usable:
  the byte stream is still in sync (a timed-out partial frame is kept and completed by the
  next ``recv``; a malformed message was a complete, well-delimited frame).
* :class:`MalformedFrame`, :class:`FrameTooLarge` (on receive), :class:`PeerDisconnected`,
  :class:`HandshakeFailed` and a send timeout close the channel: the stream can no longer be
  trusted to be aligned on frame boundaries.
"""

from __future__ import annotations

__all__ = [
    "TransportError",
    "ChannelClosed",
    "PeerDisconnected",
    "ConnectionFailed",
    "HandshakeFailed",
    "MalformedMessage",
    "MalformedFrame",
    "FrameTooLarge",
    "ChannelTimeout",
    "UnsupportedValue",
]


class TransportError(Exception):
    """Base class of every error raised by :mod:`medshield.transport`."""


class ChannelClosed(TransportError):
    """This end of the channel was closed (by :meth:`Channel.close`) and cannot be used."""


class PeerDisconnected(TransportError, ConnectionError):
    """The other end closed the channel, crashed, or the connection broke."""


class ConnectionFailed(TransportError, ConnectionError):
    """A TCP connection could not be established (refused, unreachable, bad address)."""


class HandshakeFailed(TransportError, ConnectionError):
    """The TLS handshake (or a TLS-level check such as a client certificate) failed."""


class MalformedMessage(TransportError, ValueError):
    """A payload could not be decoded: bad header, unknown dtype, sizes that do not match.

    The frame itself was well delimited, so the channel stays usable.
    """


class MalformedFrame(MalformedMessage):
    """The byte stream does not carry medshield frames (wrong magic or version).

    Raised for example when someone speaks HTTP or TLS to a plaintext listener. The channel
    is closed because frame boundaries are lost.
    """


class FrameTooLarge(TransportError):
    """A frame is larger than the channel's ``max_frame_bytes``.

    On receive it is raised from the declared length in the frame header, before any
    buffer is allocated; on send it is raised before anything is written.
    """


class ChannelTimeout(TransportError, TimeoutError):
    """A connect, accept, handshake, send or receive did not complete in time."""


class UnsupportedValue(TransportError, TypeError):
    """:func:`~medshield.transport.codec.encode` was given a value it cannot serialise."""
