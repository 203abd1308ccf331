"""A channel between two threads of one process, over thread-safe queues.

It still encodes and decodes every message, so byte counts equal those of
:class:`~medshield.transport.tcp.TcpChannel` and the receiver gets a copy (mutating a
received tensor never changes the sender's). Use it for tests and single-machine
simulations of multi-party protocols; switch to TCP without touching the protocol code.
"""

from __future__ import annotations

import queue
import threading

from medshield.transport.base import Channel
from medshield.transport.errors import ChannelClosed, ChannelTimeout, PeerDisconnected
from medshield.transport.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    FRAME_HEADER_SIZE,
    parse_frame_header,
)

__all__ = ["InProcessChannel"]

_PEER_CLOSED = object()  # put in the peer's inbox by close()
_SELF_CLOSED = object()  # put in one's own inbox by close() to wake a blocked recv


class _Link:
    """State shared by the two ends of a pair."""

    def __init__(self) -> None:
        self.inboxes: tuple[queue.Queue[object], queue.Queue[object]] = (
            queue.Queue(),
            queue.Queue(),
        )
        self.closed = [False, False]
        self.lock = threading.Lock()


class InProcessChannel(Channel):
    """One end of an in-process channel; create both ends with :meth:`pair`.

    Messages sent before :meth:`close` are still delivered; after them the other end's
    ``recv`` raises :class:`PeerDisconnected` (like TCP after a FIN). Sending to a closed
    peer raises :class:`PeerDisconnected` at once.
    """

    def __init__(
        self,
        link: _Link,
        side: int,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        timeout: float | None = None,
    ) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes, timeout=timeout)
        self._link = link
        self._side = side

    @classmethod
    def pair(
        cls, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, timeout: float | None = None
    ) -> tuple[InProcessChannel, InProcessChannel]:
        """Two connected ends ``(a, b)``: what ``a`` sends, ``b`` receives, and vice versa."""
        link = _Link()
        a = cls(link, 0, max_frame_bytes=max_frame_bytes, timeout=timeout)
        b = cls(link, 1, max_frame_bytes=max_frame_bytes, timeout=timeout)
        return a, b

    @property
    def peer(self) -> str:
        return f"in-process end {1 - self._side}"

    def _peer_gone(self) -> PeerDisconnected:
        return PeerDisconnected(
            f"the other end ({self.peer}) closed the channel; no more messages will arrive "
            "(check why the other party stopped, then open a new pair)"
        )

    def _send_frame(self, frame: bytes) -> None:
        with self._link.lock:
            if self._link.closed[1 - self._side]:
                raise self._peer_gone()
            self._link.inboxes[1 - self._side].put(frame)

    def _recv_payload(self, timeout: float | None) -> memoryview:
        try:
            item = self._link.inboxes[self._side].get(timeout=timeout)
        except queue.Empty:
            raise ChannelTimeout(
                f"no message from {self.peer} within {timeout} s; the other party is slow or "
                "stuck: pass a larger timeout to recv() or check its thread"
            ) from None
        if item is _SELF_CLOSED:
            raise ChannelClosed(
                "this channel was closed (close() was called, perhaps from another thread) "
                "while waiting in recv(); open a new pair to keep talking"
            )
        if item is _PEER_CLOSED:
            raise self._fail(self._peer_gone())
        assert isinstance(item, bytes)
        length = parse_frame_header(item[:FRAME_HEADER_SIZE], self.max_frame_bytes, self.peer)
        payload = memoryview(item)[FRAME_HEADER_SIZE:]
        assert payload.nbytes == length
        return payload

    def _close(self) -> None:
        with self._link.lock:
            self._link.closed[self._side] = True
            self._link.inboxes[1 - self._side].put(_PEER_CLOSED)
            self._link.inboxes[self._side].put(_SELF_CLOSED)
