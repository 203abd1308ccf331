"""Two real processes on loopback: a peer process (``_peer.py``) and this test process."""

from __future__ import annotations

import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from medshield.transport import (
    ChannelTimeout,
    PeerDisconnected,
    TcpChannel,
    encode_frame,
)
from medshield.transport.framing import MAGIC, VERSION

pytestmark = pytest.mark.timeout(60)

PEER = Path(__file__).with_name("_peer.py")
SRC = Path(__file__).resolve().parents[2] / "src"


class Peer:
    """A ``_peer.py`` subprocess; ``lines`` receives its stdout lines."""

    def __init__(self, mode: str) -> None:
        env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(self.expect("PORT ").split()[1])
        return self._port

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line
        raise AssertionError(f"peer never printed {prefix!r}; output:\n{''.join(self.output)}")

    def connect(self) -> TcpChannel:
        return TcpChannel.connect("127.0.0.1", self.port, timeout=10, recv_timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._pump_thread.join(timeout=5)  # EOF once the process is gone
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def peers() -> Iterator[dict[str, Peer]]:
    # both processes start at once (importing torch dominates their start-up time)
    started = {mode: Peer(mode) for mode in ("serve", "partial")}
    yield started
    for peer in started.values():
        peer.stop()


@pytest.fixture(scope="module")
def server(peers: dict[str, Peer]) -> Peer:
    return peers["serve"]


def _last_error(server: Peer) -> dict:
    with server.connect() as ch:
        ch.send({"op": "last_error"})
        return ch.recv()


def test_two_processes_transform_tensors_and_agree_on_counts(server: Peer) -> None:
    gen = torch.Generator().manual_seed(0)
    with server.connect() as ch:
        cases = [
            torch.randn(3, 4, generator=gen),
            torch.randint(-100, 100, (7,), generator=gen),
            torch.randn(5, 6, generator=gen, dtype=torch.float64).t(),  # non-contiguous
            torch.tensor(2.5),
            torch.empty(0, 3),
        ]
        for i, x in enumerate(cases):
            extra = {"i": i, "tag": f"case{i}", "nested": [1.5, None, (b"\x00\xff", True)]}
            ch.send({"op": "affine", "x": x, "a": 3, "b": -1, "extra": extra})
            reply = ch.recv()
            assert reply["y"].dtype == x.dtype and reply["y"].shape == x.shape
            assert torch.equal(reply["y"], 3 * x - 1)
            assert reply["sum"].dtype == x.dtype  # reduction order may differ: compare loosely
            assert torch.allclose(reply["sum"], x.sum(), rtol=1e-6, atol=1e-6)
            assert reply["echo"] == extra
        ch.send({"op": "stats"})
        mine = ch.stats.snapshot()  # the server snapshots after receiving this request
        theirs = ch.recv()["stats"]
        k = len(cases)
        assert mine.messages_sent == theirs["messages_received"] == k + 1
        assert mine.messages_received == theirs["messages_sent"] == k
        assert mine.bytes_sent == theirs["bytes_received"]
        assert mine.bytes_received == theirs["bytes_sent"]
        assert (mine.rounds, theirs["rounds"]) == (k + 1, k)  # ping-pong: one round per flight
        assert ch.stats.rounds == k + 1 and ch.stats.messages_received == k + 1
        ch.send({"op": "bye"})


def test_garbage_frame_raises_malformed_frame_and_server_keeps_serving(server: Peer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"\x00garbage that is not a medshield frame at all")
    err = _last_error(server)
    assert err["error"] == "MalformedFrame" and "bad frame magic" in err["message"]
    # the same server still serves ordinary clients
    with server.connect() as ch:
        ch.send({"op": "affine", "x": torch.ones(2), "a": 1, "b": 1, "extra": None})
        assert torch.equal(ch.recv()["y"], torch.full((2,), 2.0))


def test_oversized_frame_header_raises_frame_too_large_on_the_server(server: Peer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(struct.pack("<4sHHQ", MAGIC, VERSION, 0, 2**50))  # 1 PiB announced
    err = _last_error(server)
    assert err["error"] == "FrameTooLarge" and "max_frame_bytes" in err["message"]


def test_malformed_payload_inside_a_valid_frame_keeps_the_connection(server: Peer) -> None:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    junk = b"\x05\x00\x00\x00{oops"  # header length 5, invalid JSON
    raw.sendall(struct.pack("<4sHHQ", MAGIC, VERSION, 0, len(junk)) + junk)
    raw.sendall(encode_frame({"op": "last_error"}))  # same connection, next frame
    with TcpChannel(raw, peer="server", timeout=10) as ch:
        err = ch.recv()
        assert err["error"] == "MalformedMessage"
        ch.send({"op": "bye"})


def test_recv_timeout_then_the_conversation_continues(server: Peer) -> None:
    with server.connect() as ch:
        ch.send({"op": "silent"})
        start = time.monotonic()
        with pytest.raises(ChannelTimeout, match="within 0.3 s"):
            ch.recv(timeout=0.3)
        assert 0.25 < time.monotonic() - start < 5
        ch.send({"op": "affine", "x": torch.zeros(1), "a": 1, "b": 7, "extra": "after"})
        assert ch.recv()["echo"] == "after"
        ch.send({"op": "bye"})


def test_peer_killed_mid_frame_raises_peer_disconnected(peers: dict[str, Peer]) -> None:
    peer = peers["partial"]
    with peer.connect() as ch:
        ch.send({"x": torch.arange(3)})
        assert torch.equal(ch.recv()["y"], torch.arange(1, 4))
        peer.expect("PARTIAL")
        killer = threading.Timer(0.3, peer.proc.kill)  # kill while we wait for the frame
        killer.start()
        with pytest.raises(PeerDisconnected, match="in the middle of a frame"):
            ch.recv(timeout=20)
        killer.join()
        with pytest.raises(PeerDisconnected):  # the failure is sticky
            ch.recv(timeout=1)
