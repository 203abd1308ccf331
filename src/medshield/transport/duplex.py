"""Full-duplex "send one message, receive one message" over a :class:`TcpChannel`.

Both compute servers send in every round (PE-HEALTH's online phase opens masked values
simultaneously). Sending first and then receiving deadlocks over TCP as soon as a message
is larger than what the two kernels buffer (send buffer of one side plus receive buffer of
the other, a few hundred KB to a few MB): both sides block in ``send`` and nobody reads.

:func:`duplex_exchange` interleaves the two directions in **one thread** on the channel's
non-blocking socket: it writes while the socket is writable and reads whatever has arrived,
waiting with ``poll`` on both events. One thread keeps it safe under TLS (an OpenSSL
connection must not be read and written from two threads at once, see
:mod:`medshield.transport.tcp`) and keeps one round per exchange in
:class:`~medshield.transport.ChannelStats` (one flight of sends, as with send-then-recv).

It works on :class:`~medshield.transport.TcpChannel`'s own receive state (the partial-frame
buffers and ``_recv_payload``), so both directions stay consistent with its ordinary
``send``/``recv``; use it as :meth:`TcpChannel.exchange <medshield.transport.TcpChannel.exchange>`.
"""

from __future__ import annotations

import select
import ssl
import time
from typing import TYPE_CHECKING, Any

from medshield.transport.codec import decode
from medshield.transport.errors import ChannelTimeout, MalformedMessage
from medshield.transport.framing import FRAME_HEADER_SIZE, encode_frame

if TYPE_CHECKING:
    from medshield.transport.tcp import TcpChannel

__all__ = ["duplex_exchange"]

_CHUNK = 1 << 20


def _poll(fd: int, read: bool, write: bool, deadline: float | None) -> None:
    """Wait until ``fd`` is readable/writable (as asked) or ``deadline`` passed."""
    ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000) + 1)
    poller = select.poll()
    poller.register(fd, (select.POLLIN if read else 0) | (select.POLLOUT if write else 0))
    poller.poll(ms)


def duplex_exchange(
    channel: TcpChannel, msg: dict[str, Any], timeout: float | None = None
) -> dict[str, Any]:
    """Send ``msg`` and receive the peer's next message at the same time.

    Parameters
    ----------
    channel
        A connected channel (plaintext or TLS); nothing else may use it concurrently.
    msg
        The message to send (any message :func:`medshield.transport.encode` accepts).
    timeout
        Seconds for the whole exchange (``None``: the channel's default ``timeout``).

    Returns
    -------
    The peer's message.

    Raises
    ------
    ChannelTimeout
        If the exchange did not finish in time; the channel is then closed, because a frame
        may be half sent.
    PeerDisconnected, MalformedFrame, FrameTooLarge
        As for :meth:`~medshield.transport.Channel.recv` (the channel is closed).
    MalformedMessage
        If the peer's frame does not decode (the channel stays usable).
    """
    wait = channel.timeout if timeout is None else timeout
    frame = encode_frame(msg, channel.max_frame_bytes)
    channel._check_usable()
    deadline = None if wait is None else time.monotonic() + wait
    sock = channel._sock
    view = memoryview(frame)
    sent = 0
    payload: Any = None
    send_wants_read = False  # a TLS write may first need to read (renegotiation)
    with channel._send_lock, channel._recv_lock:
        channel._check_usable()
        while sent < len(view) or payload is None:
            if sent < len(view):
                try:
                    sent += sock.send(view[sent : sent + _CHUNK])
                    send_wants_read = False
                    continue
                except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                    send_wants_read = False
                except ssl.SSLWantReadError:
                    send_wants_read = True
                except OSError as exc:  # includes ssl.SSLError
                    raise channel._broken(exc) from None
            if payload is None:
                try:
                    payload = channel._recv_payload(0.0)  # reads what is there, never waits
                    continue
                except ChannelTimeout:
                    pass
            if deadline is not None and time.monotonic() >= deadline:
                raise channel._fail(ChannelTimeout(
                    f"exchange with {channel.peer} did not finish within {wait} s ({sent} of "
                    f"{len(view)} bytes sent, reply {'not ' if payload is None else ''}received); "
                    "the other server is slow or stuck: check it, or raise the timeout "
                    "(the channel was closed)"
                ))
            sending = sent < len(view)
            _poll(sock.fileno(), payload is None or (sending and send_wants_read),
                  sending and not send_wants_read, deadline)
        channel._stats._record_send(len(frame), new_round=not channel._last_was_send)
        channel._last_was_send = False
        nbytes = FRAME_HEADER_SIZE + memoryview(payload).nbytes
        try:
            out = decode(payload)
        except MalformedMessage as exc:
            channel._stats._record_recv(nbytes, decoded=False)
            raise MalformedMessage(f"{exc} [frame from {channel.peer}]") from None
        channel._stats._record_recv(nbytes, decoded=True)
        return out
