"""The server-to-server exchange over TCP: no deadlock on messages larger than socket buffers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from medshield.secure.comm import Peer
from medshield.secure.engine import ComputeServer, HealthcareCentre, run_in_process
from medshield.secure.net import credentials as cr
from medshield.secure.sharing import share_input
from medshield.transport import TcpChannel, TcpListener

BIG = 8 * 2**20  # far beyond loopback socket buffers (a few hundred KB to ~4 MB)


def _pair(tls_dir: Path | None) -> tuple[TcpChannel, TcpChannel]:
    sctx = cctx = None
    if tls_dir is not None:
        sctx = cr.server_ssl_context(cr.load_credentials(tls_dir, "server1"))
        cctx = cr.client_ssl_context(cr.load_credentials(tls_dir, "server0"))
    lst = TcpListener("127.0.0.1", 0, sctx)
    got: list[TcpChannel] = []
    t = threading.Thread(target=lambda: got.append(lst.accept(timeout=10)))
    t.start()
    a = TcpChannel.connect("127.0.0.1", lst.port, ssl_context=cctx, timeout=10)
    t.join(10)
    lst.close()
    return a, got[0]


def _two(fn0, fn1):  # type: ignore[no-untyped-def]
    out: list[object] = [None, None]
    errs: list[BaseException] = []

    def run(i: int, fn) -> None:  # type: ignore[no-untyped-def]
        try:
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errs.append(e)

    ts = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate((fn0, fn1))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts), "exchange deadlocked"
    if errs:
        raise errs[0]
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_big_exchange_does_not_deadlock(tls: bool, pki: Path) -> None:
    a, b = _pair(pki if tls else None)
    pa, pb = Peer(a, 0, timeout=30), Peer(b, 1, timeout=30)
    ma = np.random.default_rng(0).bytes(BIG)
    mb = np.random.default_rng(1).bytes(BIG + 123)
    out = _two(lambda: [pa.exchange(ma), pa.exchange(mb[:10])],
               lambda: [pb.exchange(mb), pb.exchange(ma[:10])])
    assert out[0] == [mb, ma[:10]] and out[1] == [ma, mb[:10]]
    # one round per exchange on each side, exact frame bytes
    assert a.stats.rounds == b.stats.rounds == 2
    assert a.stats.bytes_sent == b.stats.bytes_received
    a.close()
    b.close()


@pytest.mark.timeout(60)
def test_compute_servers_over_tls_match_in_process(  # type: ignore[no-untyped-def]
    pki: Path, compiled, plain, make_rng
) -> None:
    seeded = make_rng
    x = np.random.default_rng(3).normal(size=(3000, 16))  # ~100 KB-1 MB per round message
    centre = HealthcareCentre(compiled, seeded(1))
    w = centre.share_model()
    m = centre.deal(len(x))
    xs = share_input(x, frac_bits=12, ring_bits=32, rng=seeded(2))
    a, b = _pair(pki)
    servers = [ComputeServer(party=p, program=compiled.program, model_share=w[p],
                             channel=(a, b)[p], timeout=30) for p in (0, 1)]
    for p in (0, 1):
        servers[p].load_material(m[p])
    y = _two(lambda: servers[0].run(xs[0]), lambda: servers[1].run(xs[1]))
    out = centre.reconstruct(y[0], y[1])
    ref = run_in_process(compiled, x[:5], rng=seeded(4)).output
    np.testing.assert_allclose(out[:5], ref, atol=5e-3)
    np.testing.assert_allclose(out, plain(x), atol=5e-3)
    assert a.stats.rounds == compiled.program.rounds()
    a.close()
    b.close()
