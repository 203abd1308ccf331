"""TCP channels with length-prefixed frames, bounded frame sizes, timeouts and optional TLS.

The wire format is :mod:`medshield.transport.framing` (16-byte header + codec payload). The
receiver checks the magic as soon as its 4 bytes arrive (so an HTTP or TLS client is named
at once, even if it then waits), and checks the declared length against ``max_frame_bytes``
before allocating anything; the payload buffer then grows only as bytes actually arrive.

Sockets are non-blocking and every wait goes through ``poll`` with a deadline, so timeouts
are exact per call and a timed-out ``recv`` keeps its partial frame for the next call.

Threads: ``send`` and ``recv`` are each serialised by a lock. On plaintext TCP one thread may
block in ``recv`` while another sends; with TLS use the channel from one thread at a time
(an OpenSSL connection is not safe for concurrent read and write). :meth:`TcpChannel.close`
may be called from any thread and wakes a blocked ``recv``.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import time
from typing import Any

from medshield.transport.base import Channel
from medshield.transport.errors import (
    ChannelClosed,
    ChannelTimeout,
    ConnectionFailed,
    HandshakeFailed,
    MalformedFrame,
    PeerDisconnected,
    TransportError,
)
from medshield.transport.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    FRAME_HEADER_SIZE,
    MAGIC,
    describe_foreign_bytes,
    parse_frame_header,
)

__all__ = ["TcpChannel", "TcpListener"]

_CHUNK = 1 << 20  # bytes per socket read/write call
_TLS_HINT = (
    "check that both ends agree on TLS (ssl_context on both or neither), that the client "
    "trusts the server's CA and, under mutual TLS, presents a certificate signed by the CA "
    "the server trusts"
)

_CLOSED_WHILE_BUSY = (
    "this channel was closed (close() was called, perhaps from another thread) while a send "
    "or recv was in progress; open a new channel to keep talking"
)
_NOT_TLS_REASONS = (
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "RECORD_LAYER_FAILURE",
    "UNKNOWN_PROTOCOL",
)


def _wait(sock: socket.socket, write: bool, deadline: float | None) -> bool:
    """Wait until ``sock`` is readable/writable; False when ``deadline`` passed first."""
    fd = sock.fileno()
    if fd < 0:
        raise ChannelClosed(_CLOSED_WHILE_BUSY)
    if deadline is None:
        ms = None
    else:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ms = max(1, int(left * 1000 + 0.999))
    if not hasattr(select, "poll"):  # Windows (untested): select() suffices for one socket
        fds = ([], [fd]) if write else ([fd], [])
        return any(select.select(*fds, [], None if ms is None else ms / 1000))
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    return bool(poller.poll(ms))


def _tls_reason(exc: ssl.SSLError) -> str:
    return str(getattr(exc, "verify_message", None) or exc.reason or exc)


def _handshake_error(exc: BaseException, who: str, server_side: bool) -> TransportError:
    if isinstance(exc, TimeoutError | socket.timeout):
        return ChannelTimeout(f"TLS handshake with {who} timed out; {_TLS_HINT}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return HandshakeFailed(
            f"TLS handshake with {who} failed: certificate rejected ({_tls_reason(exc)}); "
            + (
                "the client's certificate is not signed by the CA this server trusts"
                if server_side
                else "pass the CA that signed the server's certificate: client_context(ca=...)"
                " and connect with a host name or IP listed in that certificate"
            )
        )
    if isinstance(exc, ssl.SSLError):
        reason = _tls_reason(exc)
        hint = _TLS_HINT
        if server_side and reason in _NOT_TLS_REASONS:
            hint = "the client is probably not using TLS; connect with ssl_context=client_context()"
        return HandshakeFailed(f"TLS handshake with {who} failed ({reason}); {hint}")
    return HandshakeFailed(
        f"TLS handshake with {who} failed: the connection broke ({type(exc).__name__}); the "
        f"peer is probably not speaking TLS or rejected us; {_TLS_HINT}"
    )


def _tls_handshake(
    sock: socket.socket,
    ctx: ssl.SSLContext,
    *,
    who: str,
    server_side: bool,
    server_hostname: str | None,
    timeout: float | None,
) -> ssl.SSLSocket:
    sock.settimeout(timeout)
    try:
        return ctx.wrap_socket(sock, server_side=server_side, server_hostname=server_hostname)
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise _handshake_error(exc, who, server_side) from None


class TcpChannel(Channel):
    """One end of a TCP connection carrying medshield frames.

    Build it with :meth:`connect` (client) or :meth:`TcpListener.accept` (server).

    Parameters
    ----------
    sock
        A connected (and, for TLS, handshaken) socket; the channel owns it.
    peer
        ``host:port`` of the other end, for error messages.
    max_frame_bytes, timeout
        See :class:`~medshield.transport.base.Channel`.
    send_timeout
        Seconds a ``send`` may wait for the peer to drain its buffer; ``None`` waits forever.
        A send that times out after writing part of a frame closes the channel.
    """

    def exchange(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send ``msg`` and receive the peer's next message at the same time (one round).

        For protocols in which both ends send in the same round: sending first and then
        receiving deadlocks once a message outgrows the kernels' socket buffers. See
        :func:`medshield.transport.duplex.duplex_exchange`.
        """
        from medshield.transport.duplex import duplex_exchange

        return duplex_exchange(self, msg, timeout)

    def __init__(
        self,
        sock: socket.socket,
        *,
        peer: str,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        timeout: float | None = None,
        send_timeout: float | None = None,
    ) -> None:
        super().__init__(max_frame_bytes=max_frame_bytes, timeout=timeout)
        self._sock = sock
        self._peer = peer
        self.send_timeout = send_timeout
        self.tls = isinstance(sock, ssl.SSLSocket)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._header = bytearray()  # partial frame state, kept across timed-out recv calls
        self._length: int | None = None
        self._body = bytearray()

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 10.0,
        recv_timeout: float | None = None,
        send_timeout: float | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> TcpChannel:
        """Connect to a :class:`TcpListener` at ``host:port``.

        Parameters
        ----------
        ssl_context
            A client context (:func:`medshield.transport.tls.client_context`) for TLS.
        server_hostname
            Name checked against the server certificate (default ``host``).
        timeout
            Seconds for the TCP connect and the TLS handshake.
        recv_timeout
            The channel's default ``recv`` timeout.

        Raises
        ------
        ConnectionFailed
            Connection refused, host unknown or unreachable.
        ChannelTimeout
            If the connect or handshake took longer than ``timeout``.
        HandshakeFailed
            If TLS fails (untrusted certificate, server not speaking TLS, ...).
        """
        who = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise ChannelTimeout(
                f"connecting to {who} timed out after {timeout} s; check the address, the "
                "firewall, or pass a larger timeout"
            ) from None
        except ConnectionRefusedError:
            raise ConnectionFailed(
                f"connection to {who} refused: nothing is listening there; start the server "
                "(TcpListener) first, or check the host and port"
            ) from None
        except socket.gaierror as exc:
            raise ConnectionFailed(
                f"cannot resolve host {host!r} ({exc.strerror}); check the host name"
            ) from None
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot connect to {who} ({exc.strerror or exc}); check the host, port and network"
            ) from None
        if ssl_context is not None:
            sock = _tls_handshake(
                sock,
                ssl_context,
                who=who,
                server_side=False,
                server_hostname=server_hostname or host,
                timeout=timeout,
            )
        return cls(
            sock,
            peer=who,
            max_frame_bytes=max_frame_bytes,
            timeout=recv_timeout,
            send_timeout=send_timeout,
        )

    @property
    def peer(self) -> str:
        return self._peer

    # ------------------------------------------------------------------ errors
    def _broken(self, exc: BaseException | None) -> TransportError:
        """The error for an EOF (``exc is None``) or a socket error; closes the channel."""
        if self._closed and self._failure is None:
            return ChannelClosed(_CLOSED_WHILE_BUSY)
        if isinstance(exc, ssl.SSLError) and not isinstance(
            exc, ssl.SSLEOFError | ssl.SSLZeroReturnError
        ):
            return self._fail(
                HandshakeFailed(
                    f"TLS error on the connection to {self.peer} ({_tls_reason(exc)}); {_TLS_HINT}"
                )
            )
        if exc is None:
            what = "closed the connection"
        elif isinstance(exc, ssl.SSLError):
            what = f"broke the TLS connection ({_tls_reason(exc)})"
        else:
            what = f"broke the connection ({exc.strerror or type(exc).__name__})"
        if self._header:
            got = len(self._header) + len(self._body)
            want = "?" if self._length is None else str(FRAME_HEADER_SIZE + self._length)
            what += f" in the middle of a frame ({got} of {want} bytes received)"
        hint = "the peer exited, crashed or was killed: check its logs, then reconnect"
        if self._stats.bytes_received == 0 and not self._header:
            hint = (
                "it ended before any message arrived, so the peer may have refused this "
                f"connection: {_TLS_HINT}; otherwise the peer exited or crashed (check its logs)"
            )
        return self._fail(PeerDisconnected(f"{self.peer} {what}; {hint}"))

    # ------------------------------------------------------------------ sending
    def _send_frame(self, frame: bytes) -> None:
        view = memoryview(frame)
        deadline = None if self.send_timeout is None else time.monotonic() + self.send_timeout
        sent = 0
        while sent < len(view):
            try:
                sent += self._sock.send(view[sent : sent + _CHUNK])
                continue
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                write = True
            except ssl.SSLWantReadError:
                write = False
            except OSError as exc:  # includes ssl.SSLError
                raise self._broken(exc) from None
            if not _wait(self._sock, write, deadline):
                msg = (
                    f"sending {len(view)} bytes to {self.peer} timed out after "
                    f"{self.send_timeout} s; the peer is not reading: check it, or raise "
                    "send_timeout"
                )
                if sent:
                    msg += f" (the channel was closed: {sent} bytes of the frame were sent)"
                    raise self._fail(ChannelTimeout(msg))
                raise ChannelTimeout(msg)

    # ------------------------------------------------------------------ receiving
    def _read_some(self, n: int, deadline: float | None, timeout: float | None) -> bytes:
        while True:
            try:
                data = self._sock.recv(n)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                write = False
            except ssl.SSLWantWriteError:
                write = True
            except OSError as exc:
                raise self._broken(exc) from None
            else:
                if not data:
                    raise self._broken(None)
                return data
            if not _wait(self._sock, write, deadline):
                part = " (a partial frame is kept for the next recv)" if self._header else ""
                raise ChannelTimeout(
                    f"no complete message from {self.peer} within {timeout} s{part}; the peer "
                    "is slow or stuck: pass a larger timeout to recv() or check the peer"
                )

    def _recv_payload(self, timeout: float | None) -> bytearray:
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._header) < FRAME_HEADER_SIZE:
            want = FRAME_HEADER_SIZE - len(self._header)
            self._header += self._read_some(want, deadline, timeout)
            # fail fast on HTTP etc. (4 bytes are enough to judge; no need for all 16)
            if len(self._header) >= len(MAGIC) and self._header[: len(MAGIC)] != MAGIC:
                what = describe_foreign_bytes(bytes(self._header))
                raise self._fail(MalformedFrame(f"bad frame magic from {self.peer}: {what}"))
        if self._length is None:
            header = bytes(self._header)
            try:
                self._length = parse_frame_header(header, self.max_frame_bytes, self.peer)
            except TransportError as exc:
                raise self._fail(exc) from None
        while len(self._body) < self._length:
            want = min(self._length - len(self._body), _CHUNK)
            self._body += self._read_some(want, deadline, timeout)
        payload = self._body
        self._header, self._length, self._body = bytearray(), None, bytearray()
        return payload

    def _close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in another thread
        except OSError:
            pass
        self._sock.close()


class TcpListener:
    """A listening socket that hands out :class:`TcpChannel` objects.

    Parameters
    ----------
    host
        Address to bind; keep the default ``127.0.0.1`` unless peers are on other machines.
    port
        Port to bind; ``0`` lets the OS pick a free one (read it from :attr:`port`).
    ssl_context
        A server context (:func:`medshield.transport.tls.server_context`) for TLS.
    handshake_timeout
        Seconds a TLS client gets to complete its handshake inside :meth:`accept`.
    recv_timeout, send_timeout, max_frame_bytes
        Passed to every accepted :class:`TcpChannel`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        *,
        backlog: int = 16,
        handshake_timeout: float | None = 10.0,
        recv_timeout: float | None = None,
        send_timeout: float | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.recv_timeout = recv_timeout
        self.send_timeout = send_timeout
        self.max_frame_bytes = max_frame_bytes
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._sock = socket.create_server((host, port), family=family, backlog=backlog)
        except OSError as exc:
            fix = (
                "pick another port or pass port=0"
                if exc.errno == errno.EADDRINUSE
                else "check the host address (it must belong to this machine)"
            )
            raise ConnectionFailed(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); {fix}"
            ) from None
        self.port: int = self._sock.getsockname()[1]
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound."""
        return self.host, self.port

    def accept(self, timeout: float | None = None) -> TcpChannel:
        """Wait for one client and return the channel to it (TLS handshake included).

        Raises
        ------
        ChannelTimeout
            If no client connected within ``timeout`` seconds (``None`` waits forever).
        HandshakeFailed
            If the client failed the TLS handshake; the listener stays usable.
        ChannelClosed
            If the listener was closed.
        """
        if self._closed:
            raise ChannelClosed(
                f"listener on {self.host}:{self.port} is closed; create a new TcpListener"
            )
        self._sock.settimeout(timeout)
        try:
            conn, addr = self._sock.accept()
        except TimeoutError:
            raise ChannelTimeout(
                f"no client connected to {self.host}:{self.port} within {timeout} s; start the "
                "client, check it uses this port, or pass a larger timeout"
            ) from None
        except OSError as exc:
            if self._closed:
                raise ChannelClosed(
                    f"listener on {self.host}:{self.port} was closed while waiting in accept(); "
                    "create a new TcpListener"
                ) from None
            raise ConnectionFailed(
                f"accepting a connection on {self.host}:{self.port} failed "
                f"({exc.strerror or exc}); check system limits such as open files (close "
                "unused channels)"
            ) from None
        who = f"{addr[0]}:{addr[1]}"
        if self.ssl_context is not None:
            conn = _tls_handshake(
                conn,
                self.ssl_context,
                who=who,
                server_side=True,
                server_hostname=None,
                timeout=self.handshake_timeout,
            )
        return TcpChannel(
            conn,
            peer=who,
            max_frame_bytes=self.max_frame_bytes,
            timeout=self.recv_timeout,
            send_timeout=self.send_timeout,
        )

    def close(self) -> None:
        """Stop listening (wakes a blocked :meth:`accept`). Accepted channels stay open."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> TcpListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        tls = ", tls" if self.ssl_context is not None else ""
        return f"TcpListener({self.host}:{self.port}{tls}{', closed' if self._closed else ''})"
