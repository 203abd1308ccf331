"""The channel interface shared by every transport, and its traffic counters.

Modelled on CrypTen's ``Communicator`` (one interface, an in-process and a distributed
implementation, with byte and round counters) and Flower's ``Grid`` (in-memory and network
versions of one interface). Protocol code is written against :class:`Channel` and runs
unchanged over :class:`~medshield.transport.inprocess.InProcessChannel` (tests, simulation)
and :class:`~medshield.transport.tcp.TcpChannel` (real deployments).

Counting
--------
``bytes_sent``/``bytes_received`` are the exact frame bytes (16-byte frame header + encoded
payload, see :mod:`medshield.transport.framing`), identical for every channel type. They do
not include TLS record overhead or TCP/IP headers. A frame whose payload turns out malformed
counts in ``bytes_received`` but not in ``messages_received``; nothing is counted for a send
that raised before writing (unsupported value, frame too large).

A **round** is one *flight*: a maximal run of consecutive sends by this party.
``rounds`` is incremented by a ``send`` whose previous operation on this channel was a
successful-or-malformed ``recv`` (or which is the channel's first send). So in a ping-pong
exchange of ``k`` request/reply pairs each party counts ``k`` rounds; a party that sends
three messages before receiving counts one round; a party that only receives counts zero.
This is the cost model of secure-inference and split-learning papers (communication
rounds): in a two-party protocol the number of one-way network latencies paid is the sum of
both parties' ``rounds``. Timed-out receives do not change the direction.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from medshield.transport.codec import decode
from medshield.transport.errors import (
    ChannelClosed,
    MalformedMessage,
    TransportError,
)
from medshield.transport.framing import DEFAULT_MAX_FRAME_BYTES, FRAME_HEADER_SIZE, encode_frame

__all__ = ["ChannelStats", "Channel"]

_FIELDS = ("bytes_sent", "bytes_received", "messages_sent", "messages_received", "rounds")


@dataclass
class ChannelStats:
    """Traffic counters of one end of a channel.

    Use ``before = ch.stats.snapshot()`` ... ``cost = ch.stats.snapshot() - before`` to
    measure one phase of a protocol. Updates and snapshots are atomic (guarded by a lock).
    """

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    rounds: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def reset(self) -> None:
        """Set every counter to zero."""
        with self._lock:
            for name in _FIELDS:
                setattr(self, name, 0)

    def snapshot(self) -> ChannelStats:
        """A consistent, independent copy of the counters."""
        with self._lock:
            return ChannelStats(**{name: getattr(self, name) for name in _FIELDS})

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (for JSON results)."""
        snap = self.snapshot()
        return {name: getattr(snap, name) for name in _FIELDS}

    def __reduce__(self) -> tuple[type[ChannelStats], tuple[int, ...]]:
        # copy, deepcopy and pickle go through a snapshot (the lock is not copyable)
        snap = self.snapshot()
        return ChannelStats, tuple(getattr(snap, name) for name in _FIELDS)

    def _combine(self, other: object, sign: int) -> ChannelStats:
        if not isinstance(other, ChannelStats):
            return NotImplemented
        a, b = self.snapshot(), other.snapshot()
        return ChannelStats(**{n: getattr(a, n) + sign * getattr(b, n) for n in _FIELDS})

    def __add__(self, other: object) -> ChannelStats:
        return self._combine(other, 1)

    def __sub__(self, other: object) -> ChannelStats:
        return self._combine(other, -1)

    def _record_send(self, nbytes: int, new_round: bool) -> None:
        with self._lock:
            self.bytes_sent += nbytes
            self.messages_sent += 1
            self.rounds += int(new_round)

    def _record_recv(self, nbytes: int, decoded: bool) -> None:
        with self._lock:
            self.bytes_received += nbytes
            self.messages_received += int(decoded)


def _check_timeout(timeout: float | None, name: str) -> None:
    if timeout is not None and not timeout >= 0:  # also rejects NaN
        raise ValueError(f"{name} must be None (wait forever) or a number >= 0, got {timeout!r}")


class Channel(ABC):
    """A bidirectional, ordered, reliable channel of messages between two parties.

    A message is a ``dict[str, Any]`` of tensors, arrays, scalars, strings, bytes and
    nested containers (see :mod:`medshield.transport.codec`). Every message is encoded on
    ``send`` and decoded on ``recv``, so the receiver always gets a copy.

    ``send`` and ``recv`` are each serialised by a lock; :meth:`close` may be called from any
    thread and wakes a blocked ``recv`` (which then raises :class:`ChannelClosed`).

    Parameters
    ----------
    max_frame_bytes
        Largest frame (header + payload) this end sends or accepts.
    timeout
        Default ``recv`` timeout in seconds; ``None`` waits forever.
    """

    def __init__(
        self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, timeout: float | None = None
    ) -> None:
        if max_frame_bytes <= FRAME_HEADER_SIZE:
            raise ValueError(
                f"max_frame_bytes must exceed the {FRAME_HEADER_SIZE}-byte frame header, "
                f"got {max_frame_bytes}"
            )
        _check_timeout(timeout, "timeout")
        self.max_frame_bytes = max_frame_bytes
        self.timeout = timeout
        self._stats = ChannelStats()
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._last_was_send = False
        self._closed = False
        self._failure: TransportError | None = None

    # ------------------------------------------------------------------ subclass hooks
    @property
    @abstractmethod
    def peer(self) -> str:
        """A human-readable name of the other end (used in error messages)."""

    @abstractmethod
    def _send_frame(self, frame: bytes) -> None:
        """Deliver one complete frame (raise a :class:`TransportError` on failure)."""

    @abstractmethod
    def _recv_payload(self, timeout: float | None) -> bytes | bytearray | memoryview:
        """Return the payload of the next frame, its header already validated."""

    @abstractmethod
    def _close(self) -> None:
        """Release resources and tell the peer (idempotent)."""

    # ------------------------------------------------------------------ public API
    @property
    def stats(self) -> ChannelStats:
        """Live traffic counters of this end (see the module docstring for definitions)."""
        return self._stats

    @property
    def closed(self) -> bool:
        """Whether this end is closed (by :meth:`close` or after a fatal error)."""
        return self._closed

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise type(self._failure)(str(self._failure))
        if self._closed:
            raise ChannelClosed(
                f"this channel to {self.peer} is closed; open a new channel to keep talking"
            )

    def _fail(self, exc: TransportError) -> TransportError:
        """Close the channel after a fatal error and remember it (later calls re-raise)."""
        if self._failure is None and not self._closed:
            self._failure = exc
        self.close()
        return exc

    def send(self, msg: dict[str, Any]) -> None:
        """Encode ``msg`` and send it as one frame.

        Raises
        ------
        UnsupportedValue
            If ``msg`` cannot be encoded (nothing is sent).
        FrameTooLarge
            If the frame would exceed ``max_frame_bytes`` (nothing is sent).
        PeerDisconnected, ChannelClosed, ChannelTimeout
            If the frame cannot be delivered.
        """
        self._check_usable()
        frame = encode_frame(msg, self.max_frame_bytes)
        with self._send_lock:
            self._check_usable()
            self._send_frame(frame)
            self._stats._record_send(len(frame), new_round=not self._last_was_send)
            self._last_was_send = True

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        """Receive and decode the next message.

        Parameters
        ----------
        timeout
            Seconds to wait; ``None`` uses the channel's default ``timeout``.

        Raises
        ------
        ChannelTimeout
            If no complete frame arrived in time (a partial frame is kept for the next call).
        MalformedMessage
            If the frame's payload is not a valid message (the channel stays usable).
        MalformedFrame, FrameTooLarge, PeerDisconnected
            If the stream is broken (the channel is closed).
        ChannelClosed
            If this end was closed.
        """
        _check_timeout(timeout, "timeout")
        wait = self.timeout if timeout is None else timeout
        if wait is not None and math.isinf(wait):
            wait = None
        self._check_usable()
        with self._recv_lock:
            self._check_usable()
            payload = self._recv_payload(wait)
            nbytes = FRAME_HEADER_SIZE + memoryview(payload).nbytes
            self._last_was_send = False
            try:
                msg = decode(payload)
            except MalformedMessage as exc:
                self._stats._record_recv(nbytes, decoded=False)
                raise MalformedMessage(f"{exc} [frame from {self.peer}]") from None
            self._stats._record_recv(nbytes, decoded=True)
            return msg

    def close(self) -> None:
        """Close this end; the peer's next ``recv`` raises :class:`PeerDisconnected`."""
        if self._closed:
            return
        self._closed = True
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"{type(self).__name__}(peer={self.peer!r}, {state}, stats={self._stats})"
