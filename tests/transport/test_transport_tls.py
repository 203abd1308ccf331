"""TLS and mutual TLS over loopback, with certificates from generate_local_pki."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from medshield.transport import (
    ChannelTimeout,
    HandshakeFailed,
    LocalPki,
    MalformedFrame,
    PeerDisconnected,
    TcpChannel,
    TcpListener,
    client_context,
    generate_local_pki,
    server_context,
)

pytestmark = pytest.mark.timeout(30)
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return generate_local_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """A second, unrelated CA with its own certificates."""
    return generate_local_pki(tmp_path_factory.mktemp("rogue"), prefix="rogue-")


def _echo_once(lst: TcpListener) -> Callable[[], Any]:
    def run() -> Any:
        with lst.accept(timeout=10) as ch:
            ch.send(ch.recv(timeout=10))
            return ch.stats.as_dict()

    return run


def test_pki_files_and_key_permissions(pki: LocalPki) -> None:
    for name in ("ca_cert", "server_cert", "client_cert"):
        assert getattr(pki, name).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for name in ("ca_key", "server_key", "client_key"):
        assert getattr(pki, name).stat().st_mode & 0o077 == 0  # private keys: owner only


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_round_trip(pki: LocalPki, mutual: bool, background: Any) -> None:
    sctx = server_context(
        pki.server_cert, pki.server_key, ca=pki.ca_cert, require_client_cert=mutual
    )
    if mutual:
        cctx = client_context(pki.ca_cert, pki.client_cert, pki.client_key)
    else:
        cctx = client_context(pki.ca_cert)
    msg = {"x": torch.arange(1000, dtype=torch.float64), "note": "over TLS"}
    with TcpListener(HOST, 0, sctx) as lst:
        server = background(_echo_once(lst))
        with TcpChannel.connect(HOST, lst.port, ssl_context=cctx, timeout=5) as ch:
            assert ch.tls
            ch.send(msg)
            back = ch.recv(timeout=10)
            assert torch.equal(back["x"], msg["x"]) and back["note"] == msg["note"]
            stats = ch.stats.as_dict()
        theirs = server.result()
    assert stats["bytes_sent"] == theirs["bytes_received"]  # frame bytes, TLS overhead excluded
    # same frame bytes as plaintext
    with TcpListener(HOST, 0) as lst:
        server = background(_echo_once(lst))
        with TcpChannel.connect(HOST, lst.port, timeout=5) as ch:
            ch.send(msg)
            ch.recv(timeout=10)
            assert ch.stats.as_dict() == stats
        server.result()


def _expect_refusal(
    background: Any,
    sctx: ssl.SSLContext,
    cctx: ssl.SSLContext | None,
    server_match: str,
    **connect: Any,
) -> BaseException:
    """Run one connection attempt; assert the server refuses it; return the client's error."""
    with TcpListener(HOST, 0, sctx) as lst:
        server = background(lambda: lst.accept(timeout=10))
        client_error: BaseException | None = None
        try:
            with TcpChannel.connect(HOST, lst.port, ssl_context=cctx, timeout=5, **connect) as ch:
                ch.send({"x": torch.ones(3)})
                ch.recv(timeout=5)
        except Exception as exc:  # noqa: BLE001 - examined by the caller
            client_error = exc
        with pytest.raises(HandshakeFailed, match=server_match):
            server.result()
    assert client_error is not None, "the client was served despite the refusal"
    return client_error


def test_mutual_tls_refuses_a_client_without_a_certificate(pki: LocalPki, background: Any) -> None:
    sctx = server_context(pki.server_cert, pki.server_key, pki.ca_cert, require_client_cert=True)
    err = _expect_refusal(background, sctx, client_context(pki.ca_cert), "CERTIFICATE")
    assert isinstance(err, HandshakeFailed | PeerDisconnected), repr(err)
    assert "certificate" in str(err).lower()


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(
    pki: LocalPki, rogue: LocalPki, background: Any
) -> None:
    sctx = server_context(pki.server_cert, pki.server_key, pki.ca_cert, require_client_cert=True)
    cctx = client_context(pki.ca_cert, rogue.client_cert, rogue.client_key)
    err = _expect_refusal(background, sctx, cctx, "certificate")
    assert isinstance(err, HandshakeFailed | PeerDisconnected), repr(err)


def test_client_refuses_a_server_signed_by_an_unknown_ca(
    pki: LocalPki, rogue: LocalPki, background: Any
) -> None:
    sctx = server_context(rogue.server_cert, rogue.server_key)
    err = _expect_refusal(background, sctx, client_context(pki.ca_cert), "TLS handshake with")
    assert isinstance(err, HandshakeFailed)
    assert "certificate rejected" in str(err) and "client_context(ca=" in str(err)


def test_client_checks_the_server_name(pki: LocalPki, background: Any) -> None:
    sctx = server_context(pki.server_cert, pki.server_key)
    err = _expect_refusal(
        background,
        sctx,
        client_context(pki.ca_cert),
        "TLS handshake with",
        server_hostname="other.example",
    )
    assert isinstance(err, HandshakeFailed) and "certificate rejected" in str(err)


def test_plaintext_client_to_tls_server_fails_clearly(pki: LocalPki, background: Any) -> None:
    sctx = server_context(pki.server_cert, pki.server_key)
    err = _expect_refusal(background, sctx, None, "client is probably not using TLS")
    assert isinstance(err, PeerDisconnected | MalformedFrame), repr(err)
    assert "TLS" in str(err)


def test_tls_client_to_plaintext_server_fails_clearly(pki: LocalPki, background: Any) -> None:
    with TcpListener(HOST, 0) as lst:

        def serve() -> None:
            with lst.accept(timeout=10) as ch:
                ch.recv(timeout=10)

        server = background(serve)
        with pytest.raises(HandshakeFailed, match="TLS handshake with 127.0.0.1"):
            TcpChannel.connect(HOST, lst.port, ssl_context=client_context(pki.ca_cert), timeout=5)
        with pytest.raises(MalformedFrame, match="speaks TLS but this end is plaintext"):
            server.result()


def test_silent_client_times_out_the_tls_handshake(pki: LocalPki) -> None:
    import socket

    sctx = server_context(pki.server_cert, pki.server_key)
    with TcpListener(HOST, 0, sctx, handshake_timeout=0.2) as lst:
        with socket.create_connection((HOST, lst.port), timeout=5):  # connects, says nothing
            with pytest.raises(ChannelTimeout, match="TLS handshake"):
                lst.accept(timeout=5)


def test_context_helpers_report_configuration_mistakes(pki: LocalPki, rogue: LocalPki) -> None:
    with pytest.raises(ValueError, match="needs ca="):
        server_context(pki.server_cert, pki.server_key, require_client_cert=True)
    with pytest.raises(FileNotFoundError, match="generate_local_pki"):
        server_context(Path("/nonexistent/server.pem"), pki.server_key)
    with pytest.raises(FileNotFoundError, match="CA file"):
        client_context(Path("/nonexistent/ca.pem"))
    with pytest.raises(ValueError, match="key must match"):
        server_context(pki.server_cert, rogue.server_key)
    with pytest.raises(ValueError, match="without cert"):
        client_context(pki.ca_cert, key=pki.client_key)
    with pytest.raises(ValueError, match="PEM certificate"):
        client_context(pki.ca_key)  # a key is not a CA certificate
