"""A live deployment in threads (real TCP + mutual TLS on loopback): results, security, faults."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medshield.secure.net import credentials as cr
from medshield.secure.net.sensor import Sensor, SensorError
from medshield.secure.net.wire import WireConnection, WireError, encode_frame
from medshield.transport import TcpChannel

pytestmark = pytest.mark.timeout(120)


def _eventually(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``cond()`` (servers update counters just after the centre has the result)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def _sensor(live, name: str = "sensor-0", rng=None) -> Sensor:  # type: ignore[no-untyped-def]
    return Sensor(creds=cr.load_credentials(live.pki, name), servers=live.servers, timeout=10,
                  rng=rng)


def _raw(live, party: int, name: str = "sensor-0") -> WireConnection:  # type: ignore[no-untyped-def]
    ctx = cr.client_ssl_context(cr.load_credentials(live.pki, name))
    return WireConnection(*live.servers[party], ssl_context=ctx, timeout=10)


def test_results_are_correct_and_only_reach_the_centre(live, plain) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(0).normal(size=(6, 1, 16))
    with _sensor(live) as s:
        for i in range(6):
            assert s.submit(x[i], patient=f"patient-{i}", rid=f"r{i}") == f"r{i}"
    assert live.collector.wait_for(6, 30)
    for i in range(6):
        res = live.collector.results[("sensor-0", f"r{i}")]
        assert res.status == "ok" and res.patient == f"patient-{i}"
        np.testing.assert_allclose(res.output, plain(x[i]), atol=5e-3)
        assert res.label == [int(plain(x[i]).argmax())]
    assert _eventually(lambda: live.s1.status()["completed"] == 6)
    # both servers consumed the same slots (queued requests may share a 4-image slot)
    assert live.s0.status()["slots"] == live.s1.status()["slots"] < 60


def test_replayed_request_id_is_refused_and_consumes_nothing(live) -> None:  # type: ignore[no-untyped-def]
    x = np.zeros((1, 16))
    with _sensor(live) as s:
        s.submit(x, patient="p", rid="same")
        with pytest.raises(SensorError, match="replay") as err:
            s.submit(x, patient="p", rid="same")
        assert err.value.code == "replay"
        s.submit(x, patient="p", rid="next")  # the connection still works
    assert live.collector.wait_for(2, 30)
    assert set(live.collector.results) == {("sensor-0", "same"), ("sensor-0", "next")}
    assert _eventually(lambda: live.s0.status()["completed"] == 2)
    assert live.s0.status()["slots"] == live.s1.status()["slots"] == 58


def test_malformed_truncated_and_out_of_sequence_messages(live) -> None:  # type: ignore[no-untyped-def]
    # a valid frame whose payload is garbage: answered, connection stays usable
    with _raw(live, 0) as c:
        bad = encode_frame({"op": "params", "seq": 0})
        c.send_raw(bad[:16] + b"\xff" * (len(bad) - 16))
        reply = c.recv()
        assert reply["op"] == "error" and reply["code"] == "malformed"
        c.send({"op": "params", "seq": 0})
        assert c.recv()["op"] == "params"
        # wrong shape, wrong dtype, bad id: each refused with a reason
        for msg, code in (
            ({"op": "input", "rid": "a", "patient": "p", "x": np.zeros((1, 15), np.uint32)},
             "shape"),
            ({"op": "input", "rid": "a", "patient": "p", "x": np.zeros((1, 16))}, "share"),
            ({"op": "input", "rid": "../x y", "patient": "p", "x": np.zeros((1, 16), np.uint32)},
             "id"),
            ({"op": "deploy"}, "op"),
        ):
            c.send(dict(msg, seq=c_seq(c)))
            reply = c.recv()
            assert reply["op"] == "error" and reply["code"] == code, (msg["op"], reply)
        # a replayed frame (old seq) is refused and the connection is closed
        c.send({"op": "params", "seq": 0})
        assert c.recv()["code"] == "seq"
        with pytest.raises(WireError):
            c.recv()
    # a truncated frame, then the sensor vanishes; a stream of junk (not our protocol)
    with _raw(live, 0) as c:
        c.send_raw(encode_frame({"op": "params", "seq": 0})[:20])
    with _raw(live, 1) as c:
        c.send_raw(b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises(WireError):
            c.recv()
    # the servers keep serving everybody else
    with _sensor(live, "sensor-1") as s:
        s.submit(np.ones((1, 16)), patient="p", rid="after")
    assert live.collector.wait_for(1, 30)
    assert live.collector.results[("sensor-1", "after")].status == "ok"


_SEQS: dict[int, int] = {}


def c_seq(c: WireConnection) -> int:
    """Next seq on a raw connection (1 after the params exchange above)."""
    _SEQS[id(c)] = _SEQS.get(id(c), 0) + 1
    return _SEQS[id(c)]


def test_unregistered_parties_are_refused(live, foreign_pki: Path) -> None:  # type: ignore[no-untyped-def]
    # a sensor with a certificate from another CA: the TLS handshake fails
    foreign = Sensor(creds=cr.load_credentials(foreign_pki, "sensor-0"), servers=live.servers,
                     timeout=5)
    with pytest.raises(WireError):
        foreign.submit(np.zeros((1, 16)), patient="p", rid="x")
    # no certificate at all
    ctx = ssl.create_default_context(cafile=str(live.pki / "ca.pem"))
    with pytest.raises(WireError):
        c = WireConnection(*live.servers[0], ssl_context=ctx, timeout=5)
        c.send({"op": "params", "seq": 0})
        c.recv()
    # plaintext
    with socket.create_connection(live.servers[0], timeout=5) as sock:
        sock.sendall(encode_frame({"op": "params", "seq": 0}))
        sock.settimeout(5)
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"MDSH")  # closed or a TLS alert, never a reply
    # a registered sensor may not act as the centre or as server 0
    with _raw(live, 0) as c:
        c.send({"op": "deploy", "seq": 0})
        assert c.recv()["code"] == "op"
    with _raw(live, 1) as c:
        c.send({"op": "run", "seq": 0, "rid": "r", "sensor": "sensor-1", "patient": "p",
                "slot": 0})
        assert c.recv()["code"] == "op"
    # a foreign "centre" cannot deploy
    from medshield.secure.net.centre import server_status

    with pytest.raises(Exception, match="(?i)tls|certificate|handshake|closed|disconnect"):
        server_status(cr.load_credentials(foreign_pki, "centre"), live.servers[0], 0)
    assert live.s0.status()["program"] is not None  # still deployed, still serving
    with _sensor(live, "sensor-2") as s:
        s.submit(np.ones((1, 16)), patient="p", rid="ok")
    assert live.collector.wait_for(1, 30)


def test_no_shares_or_keys_in_logs(live, caplog: pytest.LogCaptureFixture, make_rng) -> None:  # type: ignore[no-untyped-def]
    from medshield.secure.sharing import share_input

    caplog.set_level(logging.DEBUG)
    x = np.random.default_rng(5).normal(size=(1, 16))
    with _sensor(live, "sensor-3", rng=make_rng(11)) as s:
        s.submit(x, patient="p9", rid="logged")
        with pytest.raises(SensorError):
            s.submit(x, patient="p9", rid="logged")
    assert live.collector.wait_for(1, 30)
    text = caplog.text
    assert "logged" in text  # the run was logged ...
    x0, x1 = share_input(x, frac_bits=12, ring_bits=32, rng=make_rng(11))
    for share in (x0, x1):  # ... but no share value, decimal or hex
        for v in share.ravel()[:8]:
            assert str(int(v)) not in text and f"{int(v):x}" not in text
    for name in ("centre", "server0", "server1", "sensor-3"):
        key = (live.pki / f"{name}.key").read_text().splitlines()[1]
        assert key[:32] not in text
    out = live.collector.results[("sensor-3", "logged")].output
    assert out is not None and f"{out[0][0]:.4f}" not in text  # nor the result


def test_small_load_many_sensors(live, plain) -> None:  # type: ignore[no-untyped-def]
    """40 requests from 8 concurrent sensors: all correct, none lost or mixed up."""
    n_sensors, per = 8, 5
    xs = np.random.default_rng(9).normal(size=(n_sensors, per, 1, 16))
    errors: list[BaseException] = []

    def sensor(i: int) -> None:
        try:
            with _sensor(live, f"sensor-{i}") as s:
                for j in range(per):
                    s.submit(xs[i, j], patient=f"pat-{i}-{j}", rid=f"q{j}")
        except BaseException as e:  # noqa: BLE001 - checked below
            errors.append(e)

    ts = [threading.Thread(target=sensor, args=(i,)) for i in range(n_sensors)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors
    assert live.collector.wait_for(n_sensors * per, 60)
    for i in range(n_sensors):
        for j in range(per):
            r = live.collector.results[(f"sensor-{i}", f"q{j}")]
            assert r.status == "ok" and r.patient == f"pat-{i}-{j}"
            np.testing.assert_allclose(r.output, plain(xs[i, j]), atol=5e-3)


def _share_to_server0_only(live, rid: str) -> None:  # type: ignore[no-untyped-def]
    with _raw(live, 0, "sensor-4") as c:
        c.send({"op": "input", "seq": 0, "rid": rid, "patient": "p",
                "x": np.zeros((1, 16), np.uint32)})
        assert c.recv()["op"] == "ok"


def test_sensor_vanishing_mid_request_fails_cleanly(live) -> None:  # type: ignore[no-untyped-def]
    # the sensor dies after sending its share to server 0 only: server 1 waits input_wait
    # (3 s here), refuses, and the centre learns that the request failed; nothing hangs
    t0 = time.monotonic()
    _share_to_server0_only(live, "half")
    assert live.collector.wait_for(1, 20)
    res = live.collector.results[("sensor-4", "half")]
    assert res.status == "failed" and "never received" in (res.reason or "")
    assert time.monotonic() - t0 < 15
    # the unused material slot went back to the pool, and the servers keep serving
    assert live.s0.status()["slots"] == live.s1.status()["slots"] == 60
    with _sensor(live, "sensor-5") as s:
        s.submit(np.ones((1, 16)), patient="p", rid="fine")
    assert live.collector.wait_for(2, 30)
    assert live.collector.results[("sensor-5", "fine")].status == "ok"


def test_server_disconnect_fails_cleanly(live) -> None:  # type: ignore[no-untyped-def]
    with _sensor(live, "sensor-6") as s:  # opens the server-to-server link
        s.submit(np.ones((1, 16)), patient="p", rid="before")
    assert live.collector.wait_for(1, 30)
    live.s1.stop()
    t0 = time.monotonic()
    with pytest.raises(WireError, match="cannot connect"):  # a sensor gets a clear error
        _sensor(live, "sensor-6").submit(np.ones((1, 16)), patient="p", rid="x")
    _share_to_server0_only(live, "orphan")  # server 0 cannot reach server 1
    assert live.collector.wait_for(2, 30)
    res = live.collector.results[("sensor-4", "orphan")]
    assert res.status == "failed" and "server 1" in (res.reason or "")
    assert time.monotonic() - t0 < 20
    assert live.s0.status()["failed"] == 1


def test_link_to_the_wrong_server_is_refused(live, pki: Path) -> None:  # type: ignore[no-untyped-def]
    # server 1 only accepts the link from server0; another server1 instance is refused
    ctx = cr.client_ssl_context(cr.load_credentials(pki, "server1"))
    ch = TcpChannel.connect(*live.servers[1], ssl_context=ctx, timeout=5)
    reply = ch.recv(timeout=5)
    assert reply["op"] == "error" and reply["code"] == "access"
    ch.close()


def test_scheduler_groups_queued_requests_into_exact_slots(live) -> None:  # type: ignore[no-untyped-def]
    s0 = live.s0
    dep = s0._dep
    dep.slots = {10: (1, b""), 11: (4, b""), 12: (2, b"")}
    z = np.zeros((1, 16), np.uint32)
    with s0._cond:  # hold the lock: the scheduler cannot run meanwhile
        for k in range(6):
            s0._inputs[("sensor-7", f"g{k}")] = ("p", z)
            s0._queue.append(("sensor-7", f"g{k}"))
        group, slot = s0._next_group(dep)
        assert [g[1] for g in group] == ["g0", "g1", "g2", "g3"] and slot == 11
        del dep.slots[11]
        group, slot = s0._next_group(dep)  # 2 left, the 2-image slot fits them exactly
        assert [g[1] for g in group] == ["g4", "g5"] and slot == 12
        s0._inputs[("sensor-7", "big")] = ("p", np.zeros((3, 16), np.uint32))
        s0._queue.append(("sensor-7", "big"))
        group, slot = s0._next_group(dep)  # no slot of 3: returned alone, to be failed
        assert [g[1] for g in group] == ["big"] and slot is None
        dep.slots = {}


def test_sensor_refuses_to_send_a_share_to_the_wrong_server(live) -> None:  # type: ignore[no-untyped-def]
    # addresses swapped: server 1 would get both shares; the sensor checks identities first
    s = Sensor(creds=cr.load_credentials(live.pki, "sensor-0"), servers=live.servers[::-1],
               timeout=10)
    with pytest.raises(SensorError, match="not server0") as err:
        s.submit(np.zeros((1, 16)), patient="p", rid="swapped")
    assert err.value.code == "identity"
    assert live.s0.status()["pending"] == live.s1.status()["pending"] == 0
