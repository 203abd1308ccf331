"""Credentials and the centre's result service: roles, replays, patient mix-ups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medshield.secure.net import credentials as cr
from medshield.secure.net.centre import ResultCollector
from medshield.secure.ring import Ring
from medshield.secure.sharing import share
from medshield.transport import PeerDisconnected, TcpChannel

pytestmark = pytest.mark.timeout(60)


def test_ca_and_names(tmp_path: Path, pki: Path) -> None:
    with pytest.raises(FileExistsError, match="already exists"):
        cr.init_ca(pki)
    for bad in ("root", "server2", "sensor-", "sensor-a b", "centre2"):
        with pytest.raises(ValueError, match="invalid party name"):
            cr.issue(pki, bad)
    with pytest.raises(FileNotFoundError, match="init-ca"):
        cr.issue(tmp_path / "none", "sensor-1")
    with pytest.raises(FileNotFoundError, match="secure issue"):
        cr.load_credentials(pki, "sensor-99")
    assert [cr.role_of(n) for n in ("centre", "server1", "sensor-x")] == [
        "centre", "server", "sensor"]
    with pytest.raises(cr.AccessDenied):
        cr.require_role("sensor-1", "centre")
    creds = cr.issue(pki, "sensor-new", out=tmp_path / "dev")
    assert creds.ca.read_bytes() == (pki / "ca.pem").read_bytes()
    assert creds.key.stat().st_mode & 0o077 == 0  # private key readable by its owner only


@pytest.fixture
def collector(pki: Path, compiled) -> ResultCollector:  # type: ignore[no-untyped-def]
    col = ResultCollector(creds=cr.load_credentials(pki, "centre"), programs=[compiled.program])
    yield col.start()
    col.stop()


def _as(pki: Path, name: str, col: ResultCollector) -> TcpChannel:
    ctx = cr.client_ssl_context(cr.load_credentials(pki, name))
    return TcpChannel.connect(*col.address, ssl_context=ctx, timeout=5, recv_timeout=5)


def test_collector_pairs_shares_and_refuses_replays_and_mixups(pki, compiled, collector, make_rng) -> None:  # type: ignore[no-untyped-def]
    ring = Ring(32)
    prog = compiled.program
    y = np.array([[1.5, -2.0, 0.25]])
    y0, y1 = share(ring.encode(y, prog.output_scale), ring, make_rng(3))
    fp = prog.fingerprint()
    c0, c1 = _as(pki, "server0", collector), _as(pki, "server1", collector)

    def res(party: int, seq: int, rid: str, patient: str, ys: np.ndarray) -> dict:  # type: ignore[type-arg]
        return {"op": "result", "seq": seq, "rid": rid, "sensor": "sensor-1",
                "patient": patient, "party": party, "y": ys, "program": fp}

    c0.send(res(0, 0, "a", "p1", y0))
    assert c0.recv()["op"] == "ok"
    c0.send(res(0, 1, "a", "p1", y0))  # the same share again: replay
    assert c0.recv()["code"] == "replay"
    c1.send(res(0, 0, "a", "p1", y1))  # server 1 claiming to be party 0
    assert c1.recv()["code"] == "party"
    c1.send(res(1, 1, "a", "p1", y1))
    assert c1.recv()["op"] == "ok"
    assert collector.wait_for(1, 5)
    r = collector.results[("sensor-1", "a")]
    assert r.status == "ok" and r.patient == "p1"
    np.testing.assert_allclose(r.output, y, atol=1e-3)
    # the two servers name different patients: refused, never reconstructed
    c0.send(res(0, 2, "b", "p1", y0))
    c1.send(res(1, 2, "b", "p2", y1))
    assert c0.recv()["op"] == c1.recv()["op"] == "ok"
    assert collector.wait_for(2, 5)
    rb = collector.results[("sensor-1", "b")]
    assert rb.status == "failed" and rb.output is None and "different patients" in rb.reason
    # a sensor may not deliver results
    s = _as(pki, "sensor-1", collector)
    s.send({"op": "result", "seq": 0})
    with pytest.raises(PeerDisconnected):
        s.recv()
    for ch in (c0, c1, s):
        ch.close()
