"""TCP channels on loopback, in one process (peers in threads or raw sockets)."""

from __future__ import annotations

import socket
import struct
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from medshield.transport import (
    ChannelClosed,
    ChannelTimeout,
    ConnectionFailed,
    FrameTooLarge,
    InProcessChannel,
    MalformedFrame,
    MalformedMessage,
    PeerDisconnected,
    TcpChannel,
    TcpListener,
    encode_frame,
)
from medshield.transport.framing import MAGIC, VERSION

pytestmark = pytest.mark.timeout(30)
HOST = "127.0.0.1"


@pytest.fixture
def listener() -> Iterator[TcpListener]:
    with TcpListener(HOST, 0, recv_timeout=10) as lst:
        yield lst


def _raw_server() -> tuple[socket.socket, int]:
    srv = socket.create_server((HOST, 0))
    srv.settimeout(10)
    return srv, srv.getsockname()[1]


def _send_once(port: int, msg: dict[str, Any], **opts: Any) -> None:
    with TcpChannel.connect(HOST, port, timeout=5, **opts) as ch:
        ch.send(msg)


def _header(length: int, version: int = VERSION, flags: int = 0, magic: bytes = MAGIC) -> bytes:
    return struct.pack("<4sHHQ", magic, version, flags, length)


def test_echo_and_byte_counts_equal_the_in_process_channel(
    listener: TcpListener, background: Any
) -> None:
    gen = torch.Generator().manual_seed(0)
    msgs = [{"x": torch.randn(4, 3, generator=gen), "step": i, "tag": "fwd"} for i in range(5)] + [
        {"x": torch.empty(0), "tensors": [torch.tensor(1), torch.ones(2, 2, dtype=torch.int8)]}
    ]

    def echo() -> dict[str, int]:
        with listener.accept(timeout=10) as ch:
            for _ in msgs:
                ch.send(ch.recv())
            return ch.stats.as_dict()

    server = background(echo)
    with TcpChannel.connect(HOST, listener.port, timeout=5, recv_timeout=10) as ch:
        for msg in msgs:
            ch.send(msg)
            back = ch.recv()
            assert back.keys() == msg.keys() and torch.equal(back["x"], msg["x"])
        tcp = ch.stats.snapshot()
    a, b = InProcessChannel.pair()
    for msg in msgs:
        a.send(msg)
        b.send(b.recv(timeout=1))
        a.recv(timeout=1)
    assert tcp == a.stats.snapshot()
    assert server.result() == b.stats.as_dict()
    assert tcp.rounds == len(msgs) and tcp.bytes_sent == sum(len(encode_frame(m)) for m in msgs)


def test_large_message_round_trip(listener: TcpListener, background: Any) -> None:
    big = torch.randn(3_000_000, generator=torch.Generator().manual_seed(1))  # 12 MB

    def serve() -> None:
        with listener.accept(timeout=10) as ch:
            ch.send({"y": -ch.recv()["x"]})

    server = background(serve)
    with TcpChannel.connect(HOST, listener.port) as ch:
        ch.send({"x": big})
        assert torch.equal(ch.recv(timeout=20)["y"], -big)
        assert ch.stats.bytes_received == len(encode_frame({"y": -big}))
    server.result()


def test_recv_timeout_keeps_a_partial_frame_for_the_next_call() -> None:
    srv, port = _raw_server()
    with srv, TcpChannel.connect(HOST, port, timeout=5) as ch:
        raw, _ = srv.accept()
        frame = encode_frame({"x": torch.arange(100)})
        with raw:
            for cut in (7, 200):  # inside the frame header, then inside the payload
                raw.sendall(frame[:cut])
                with pytest.raises(ChannelTimeout, match="partial frame is kept"):
                    ch.recv(timeout=0.1)
                raw.sendall(frame[cut:])
                assert torch.equal(ch.recv(timeout=5)["x"], torch.arange(100))
            with pytest.raises(ChannelTimeout):
                ch.recv(timeout=0)  # a poll: nothing there
            raw.sendall(frame)
            time.sleep(0.05)
            assert ch.recv(timeout=0)["x"].shape == (100,)  # a poll: the frame is there
        assert ch.stats.messages_received == 3


@pytest.mark.parametrize(
    ("raw_bytes", "match"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "speaks HTTP"),
        (b"GET ", "speaks HTTP"),  # judged on 4 bytes: no need to wait for a full header
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32), "speaks TLS"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "SSH"),
        (bytes(range(1, 40)), "unknown protocol"),
        (_header(10, version=2), "version 2"),
        (_header(10, flags=1), "reserved flags"),
    ],
)
def test_foreign_bytes_raise_malformed_frame_and_listener_keeps_serving(
    listener: TcpListener, raw_bytes: bytes, match: str, background: Any
) -> None:
    with socket.create_connection((HOST, listener.port), timeout=5) as raw:
        raw.sendall(raw_bytes)
        with listener.accept(timeout=5) as ch:
            start = time.monotonic()
            with pytest.raises(MalformedFrame, match=match):
                ch.recv(timeout=5)
            assert time.monotonic() - start < 2
            assert ch.closed
    client = background(lambda: _send_once(listener.port, {"ok": True}))
    with listener.accept(timeout=5) as ch:
        assert ch.recv(timeout=5) == {"ok": True}
    client.result()


def test_oversized_frame_header_is_refused_before_allocating(listener: TcpListener) -> None:
    with socket.create_connection((HOST, listener.port), timeout=5) as raw:
        raw.sendall(_header(2**40))  # 1 TiB announced, default limit 256 MiB
        with listener.accept(timeout=5) as ch:
            tracemalloc.start()
            try:
                with pytest.raises(FrameTooLarge, match="max_frame_bytes=268435456"):
                    ch.recv(timeout=5)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 1 << 20
            assert ch.closed


def test_frame_limit_is_inclusive_and_applies_to_both_directions(background: Any) -> None:
    msg = {"x": torch.zeros(50)}
    size = len(encode_frame(msg))
    with TcpListener(HOST, 0, max_frame_bytes=size) as lst:
        client = background(lambda: _send_once(lst.port, msg, max_frame_bytes=size))
        with lst.accept(timeout=5) as ch:
            assert ch.recv(timeout=5)["x"].shape == (50,)  # exactly at the limit
            with pytest.raises(FrameTooLarge, match="refusing to send"):
                ch.send({"x": torch.zeros(51)})
            assert not ch.closed and ch.stats.messages_sent == 0
        client.result()
        with socket.create_connection((HOST, lst.port), timeout=5) as raw:
            raw.sendall(_header(size - 16 + 1))
            with lst.accept(timeout=5) as ch, pytest.raises(FrameTooLarge, match="announced"):
                ch.recv(timeout=5)


def test_malformed_payload_in_a_valid_frame_keeps_the_channel(listener: TcpListener) -> None:
    junk = b"\x03\x00\x00\x00{x}"
    with socket.create_connection((HOST, listener.port), timeout=5) as raw:
        raw.sendall(_header(len(junk)) + junk + encode_frame({"after": 1}))
        with listener.accept(timeout=5) as ch:
            with pytest.raises(MalformedMessage, match="not valid ASCII JSON"):
                ch.recv(timeout=5)
            assert not ch.closed
            assert ch.recv(timeout=5) == {"after": 1}
            assert ch.stats.bytes_received == 16 + len(junk) + len(encode_frame({"after": 1}))
            assert ch.stats.messages_received == 1


def test_peer_closing_mid_frame_and_between_frames() -> None:
    srv, port = _raw_server()
    frame = encode_frame({"x": torch.arange(10)})
    with srv:
        with TcpChannel.connect(HOST, port) as ch:
            raw, _ = srv.accept()
            raw.sendall(frame + frame[:30])
            raw.close()
            assert torch.equal(ch.recv(timeout=5)["x"], torch.arange(10))
            msg = rf"in the middle of a frame \(30 of {len(frame)} bytes received\)"
            with pytest.raises(PeerDisconnected, match=msg):
                ch.recv(timeout=5)
            assert ch.closed
        with TcpChannel.connect(HOST, port) as ch:
            raw, _ = srv.accept()
            raw.close()
            with pytest.raises(PeerDisconnected, match="before any message arrived"):
                ch.recv(timeout=5)


def test_connection_refused_names_the_address() -> None:
    probe = socket.create_server((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()  # now (almost surely) nothing listens there
    with pytest.raises(ConnectionFailed, match=rf"{HOST}:{port} refused.*start the server"):
        TcpChannel.connect(HOST, port, timeout=5)


def test_listener_accept_timeout_close_and_port_in_use(background: Any) -> None:
    lst = TcpListener(HOST, 0)
    with pytest.raises(ChannelTimeout, match="no client connected"):
        lst.accept(timeout=0.05)
    with pytest.raises(ConnectionFailed, match="pass port=0"):
        TcpListener(HOST, lst.port)
    waiter = background(lambda: lst.accept(timeout=20))
    time.sleep(0.1)
    lst.close()
    with pytest.raises(ChannelClosed):
        waiter.result(timeout=5)
    with pytest.raises(ChannelClosed):
        lst.accept(timeout=1)


def test_close_from_another_thread_wakes_a_blocked_recv(
    listener: TcpListener, background: Any
) -> None:
    client = TcpChannel.connect(HOST, listener.port)
    with listener.accept(timeout=5):
        waiter = background(lambda: client.recv(timeout=None))
        time.sleep(0.1)
        client.close()
        with pytest.raises(ChannelClosed):
            waiter.result(timeout=5)


def test_full_duplex_recv_in_one_thread_send_in_another(
    listener: TcpListener, background: Any
) -> None:
    client = TcpChannel.connect(HOST, listener.port)
    with client, listener.accept(timeout=5) as server:
        reader = background(lambda: [client.recv(timeout=10) for _ in range(3)])
        for i in range(3):
            client.send({"i": i})  # while the reader thread is blocked in recv
            server.send({"j": server.recv(timeout=5)["i"] * 10})
        assert reader.result() == [{"j": 0}, {"j": 10}, {"j": 20}]


def test_send_timeout_when_the_peer_does_not_read(listener: TcpListener) -> None:
    client = TcpChannel.connect(HOST, listener.port, send_timeout=0.3)
    with client, listener.accept(timeout=5):  # the server never reads
        big = {"x": torch.zeros(16 * 2**20)}  # 64 MiB, far beyond the socket buffers
        with pytest.raises(ChannelTimeout, match="the peer is not reading"):
            client.send(big)
        assert client.closed  # part of the frame went out: the stream is unusable
        assert client.stats.messages_sent == 0
