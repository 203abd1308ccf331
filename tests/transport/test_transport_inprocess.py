"""ChannelStats, the Channel contract and the in-process channel."""

from __future__ import annotations

import copy
import pickle
import random
import threading
import time

import numpy as np
import pytest
import torch

from medshield.transport import (
    FRAME_HEADER_SIZE,
    ChannelClosed,
    ChannelStats,
    ChannelTimeout,
    FrameTooLarge,
    InProcessChannel,
    PeerDisconnected,
    UnsupportedValue,
    encode,
    encode_frame,
)

pytestmark = pytest.mark.timeout(30)


def test_stats_snapshot_reset_and_arithmetic() -> None:
    a = ChannelStats(
        bytes_sent=10, bytes_received=5, messages_sent=2, messages_received=1, rounds=2
    )
    snap = a.snapshot()
    a.bytes_sent += 100
    assert snap.bytes_sent == 10 and snap is not a
    b = ChannelStats(bytes_sent=1, bytes_received=1, messages_sent=1, messages_received=1, rounds=1)
    assert a + b == ChannelStats(111, 6, 3, 2, 3)
    assert (a + b) - b == a
    assert (a - a).as_dict() == dict.fromkeys(ChannelStats().as_dict(), 0)
    a.reset()
    assert a == ChannelStats() and a.as_dict()["bytes_sent"] == 0
    with pytest.raises(TypeError):
        _ = a + 3  # type: ignore[operator]
    b.messages_sent = 9
    for clone in (copy.copy(b), copy.deepcopy(b), pickle.loads(pickle.dumps(b))):
        assert clone == b and clone is not b


def test_round_trip_counts_real_frame_bytes() -> None:
    a, b = InProcessChannel.pair()
    msg = {"x": torch.randn(3, 4), "meta": {"step": 1, "ids": [1, 2, 3]}}
    a.send(msg)
    out = b.recv(timeout=1)
    assert torch.equal(out["x"], msg["x"]) and out["meta"] == msg["meta"]
    frame = encode_frame(msg)
    assert len(frame) == FRAME_HEADER_SIZE + len(encode(msg))
    assert a.stats.bytes_sent == b.stats.bytes_received == len(frame)
    assert (a.stats.messages_sent, b.stats.messages_received) == (1, 1)
    assert (a.stats.rounds, b.stats.rounds) == (1, 0)


def test_messages_are_copies() -> None:
    a, b = InProcessChannel.pair()
    x = torch.zeros(4)
    a.send({"x": x})
    x += 1  # mutating after send does not change what was sent
    y = b.recv(timeout=1)["x"]
    assert y.sum() == 0
    y += 5  # nor does the receiver share memory with the sender
    assert x.sum() == 4


def test_rounds_count_flights_in_ping_pong_and_bursts() -> None:
    a, b = InProcessChannel.pair()
    for _ in range(4):  # ping-pong: one round per flight on each side
        a.send({"q": 1})
        b.recv(timeout=1)
        b.send({"r": 1})
        a.recv(timeout=1)
    assert (a.stats.rounds, b.stats.rounds) == (4, 4)
    before = a.stats.snapshot()
    for i in range(3):  # a burst is one flight
        a.send({"i": i})
    for _ in range(3):
        b.recv(timeout=1)
    phase = a.stats.snapshot() - before
    assert (phase.rounds, phase.messages_sent) == (1, 3)
    assert phase.bytes_sent == sum(len(encode_frame({"i": i})) for i in range(3))


def test_rounds_and_bytes_match_a_slow_reference_on_random_schedules() -> None:
    """Replay random interleavings and recount every counter from the operation log."""
    rng = random.Random(0)
    for _ in range(20):
        ends = InProcessChannel.pair()
        log: list[list[tuple[str, int]]] = [[], []]  # per side: (op, frame bytes)
        pending = [0, 0]  # messages waiting for each side
        for _ in range(rng.randrange(1, 40)):
            side = rng.randrange(2)
            if pending[side] and rng.random() < 0.5:
                msg = ends[side].recv(timeout=1)
                pending[side] -= 1
                log[side].append(("recv", len(encode_frame(msg))))
            else:
                msg = {"v": torch.zeros(rng.randrange(5)), "s": "x" * rng.randrange(3)}
                ends[side].send(msg)
                pending[1 - side] += 1
                log[side].append(("send", len(encode_frame(msg))))
        for side in (0, 1):
            ops = [op for op, _ in log[side]]
            rounds = sum(
                op == "send" and (i == 0 or ops[i - 1] != "send") for i, op in enumerate(ops)
            )
            expected = ChannelStats(
                bytes_sent=sum(n for op, n in log[side] if op == "send"),
                bytes_received=sum(n for op, n in log[side] if op == "recv"),
                messages_sent=ops.count("send"),
                messages_received=ops.count("recv"),
                rounds=rounds,
            )
            assert ends[side].stats.snapshot() == expected


def test_works_across_threads() -> None:
    a, b = InProcessChannel.pair(timeout=10)

    def worker() -> None:
        while True:
            try:
                msg = b.recv()
            except PeerDisconnected:
                return
            b.send({"y": msg["x"] @ msg["x"].T})

    thread = threading.Thread(target=worker)
    thread.start()
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        x = torch.randn(3, 5, generator=gen)
        a.send({"x": x})
        assert torch.allclose(a.recv()["y"], x @ x.T)
    a.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert b.stats.messages_sent == a.stats.messages_received == 20


def test_closing_one_end() -> None:
    a, b = InProcessChannel.pair()
    a.send({"last": np.arange(3)})
    a.close()
    assert a.closed
    np.testing.assert_array_equal(b.recv(timeout=1)["last"], np.arange(3))  # delivered first
    with pytest.raises(PeerDisconnected, match="closed the channel"):
        b.recv(timeout=1)
    with pytest.raises(PeerDisconnected):  # sticky, and does not wait for the timeout
        b.recv(timeout=10)
    with pytest.raises(PeerDisconnected):
        b.send({"x": 1})
    with pytest.raises(ChannelClosed):
        a.send({"x": 1})
    with pytest.raises(ChannelClosed):
        a.recv(timeout=1)
    a.close()  # idempotent


def test_send_to_a_closed_peer_raises_at_once() -> None:
    a, b = InProcessChannel.pair()
    b.close()
    with pytest.raises(PeerDisconnected):
        a.send({"x": 1})
    assert a.stats.messages_sent == 0


def test_close_wakes_a_blocked_recv_in_another_thread() -> None:
    a, _b = InProcessChannel.pair()
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            a.recv()  # no timeout: waits until closed
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.1)
    a.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and isinstance(errors[0], ChannelClosed)


def test_context_manager_closes() -> None:
    a, b = InProcessChannel.pair()
    with a:
        a.send({"x": 1})
    assert a.closed
    assert b.recv(timeout=1) == {"x": 1}
    with pytest.raises(PeerDisconnected):
        b.recv(timeout=1)


def test_recv_timeout_leaves_the_channel_usable() -> None:
    a, b = InProcessChannel.pair(timeout=0.05)
    start = time.monotonic()
    with pytest.raises(ChannelTimeout, match="within 0.05 s"):
        b.recv()  # channel default timeout
    assert time.monotonic() - start >= 0.04
    a.send({"x": 1})
    assert b.recv() == {"x": 1}
    assert b.stats.messages_received == 1
    with pytest.raises(ChannelTimeout):
        b.recv(timeout=0)  # a poll
    a.send({"x": 2})
    assert b.recv(timeout=0) == {"x": 2}


def test_frame_limit_and_unsupported_values_send_nothing() -> None:
    a, b = InProcessChannel.pair(max_frame_bytes=1000)
    with pytest.raises(FrameTooLarge, match="max_frame_bytes=1000"):
        a.send({"x": torch.zeros(1000)})
    with pytest.raises(UnsupportedValue):
        a.send({"x": object()})
    assert a.stats == ChannelStats()
    a.send({"x": torch.zeros(10)})  # still usable
    assert b.recv(timeout=1)["x"].shape == (10,)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        InProcessChannel.pair(max_frame_bytes=8)
    with pytest.raises(ValueError, match="timeout"):
        InProcessChannel.pair(timeout=-1)
    a, _ = InProcessChannel.pair()
    with pytest.raises(ValueError, match="timeout"):
        a.recv(timeout=float("nan"))
