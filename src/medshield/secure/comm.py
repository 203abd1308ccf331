"""One compute server's end of the server-to-server link: the "exchange" primitive.

Every interactive step of the protocol is one *round*: both servers send one message, then
both receive the other's. A message is ``{"d": bytes}`` (one raw buffer, so the codec adds
only a small fixed header), holding ring elements packed to ``l`` bits each
(:meth:`Ring.pack`) or bit-sliced rows (eight elements' bits to a byte). Byte and round counts come from the
channel's own :class:`~medshield.transport.ChannelStats`.

The link works over any object with ``send(dict)`` and ``recv(timeout) -> dict``
(:class:`medshield.transport.Channel`: in-process for tests, TCP for deployments).

Deadlock: both servers send in the same round. Sending first and receiving afterwards
deadlocks over TCP once a message exceeds what the kernels buffer, so over a
:class:`~medshield.transport.TcpChannel` :meth:`Peer.exchange` sends and receives at the same
time in one thread (:meth:`medshield.transport.TcpChannel.exchange`, safe under TLS, one
round per exchange). A channel that has its own ``exchange(msg, timeout)`` method is used
through it; any other channel (:class:`~medshield.transport.InProcessChannel`, whose queues
are unbounded) gets send-then-receive.
"""

from __future__ import annotations

from typing import Any, Protocol

from medshield.secure.ring import U64, Ring

__all__ = ["MessageChannel", "Peer"]


class MessageChannel(Protocol):
    """What :class:`Peer` needs from a channel (satisfied by ``medshield.transport.Channel``)."""

    def send(self, msg: dict[str, Any]) -> None: ...

    def recv(self, timeout: float | None = None) -> dict[str, Any]: ...


class Peer:
    """A compute server's view of the link to the other server.

    Parameters
    ----------
    channel
        The server-to-server channel.
    party
        This server's index, 0 or 1.
    timeout
        Seconds to wait for the other server in each round (``None``: forever).
    """

    def __init__(self, channel: MessageChannel, party: int, *, timeout: float | None = 120.0) -> None:
        if party not in (0, 1):
            raise ValueError(f"party must be 0 or 1, got {party!r}")
        self.channel = channel
        self.party = party
        self.timeout = timeout

    def _swap(self, msg: dict[str, Any]) -> dict[str, Any]:
        own = getattr(self.channel, "exchange", None)  # TcpChannel: both directions at once
        if callable(own):
            return own(msg, self.timeout)  # type: ignore[no-any-return]
        self.channel.send(msg)
        return self.channel.recv(self.timeout)

    def exchange(self, payload: bytes) -> bytes:
        """Send ``payload``, receive the other server's payload of the same round.

        Over TCP both directions run at once, so a payload of any size (up to the channel's
        ``max_frame_bytes``) cannot deadlock.
        """
        msg = self._swap({"d": payload})
        data = msg.get("d") if isinstance(msg, dict) else None
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(
                "the other server sent a message without a 'd' payload: it is not running "
                "the same medshield.secure program (check both servers' versions)"
            )
        return bytes(data)

    def open_ring(self, share: U64, ring: Ring) -> U64:
        """Reconstruct ``x`` from this server's share (one round, ``l`` bits per element)."""
        other = ring.unpack(self.exchange(ring.pack(share)), share.shape)
        return ring.add(share, other)
