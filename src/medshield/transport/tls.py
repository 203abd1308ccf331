"""TLS contexts for :mod:`medshield.transport.tcp`, and a throwaway local PKI.

Threat model: TLS protects frames against a network eavesdropper or man in the middle
between parties (hospital <-> server, device <-> server). With ``require_client_cert=True``
(mutual TLS) the server only talks to clients holding a certificate signed by its CA, which
is how the parties of a deployment authenticate each other. TLS does not protect against
the parties themselves: that is the job of the privacy protocols built on top.

:func:`generate_local_pki` makes a self-signed CA plus a server and a client certificate
(EC P-256, keys from the OS random source) for tests and single-site deployments; for a real
multi-site deployment use certificates from your organisation's CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["server_context", "client_context", "LocalPki", "generate_local_pki"]

PathLike = str | os.PathLike[str]


def _load_chain(ctx: ssl.SSLContext, cert: PathLike, key: PathLike | None, role: str) -> None:
    for path in (cert, key):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(
                f"{role} certificate/key file {os.fspath(path)!r} does not exist; check the "
                "path, or make test files with medshield.transport.tls.generate_local_pki(dir)"
            )
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(
            f"cannot load the {role} certificate {os.fspath(cert)!r} with key "
            f"{os.fspath(key) if key is not None else '(in the certificate file)'!r} "
            f"({exc.reason}); both must be PEM files and the key must match the certificate"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: PathLike, role: str) -> None:
    if not Path(ca).is_file():
        raise FileNotFoundError(
            f"{role} CA file {os.fspath(ca)!r} does not exist; pass the PEM certificate of "
            "the CA that signed the peer's certificate"
        )
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca))
    except ssl.SSLError as exc:
        raise ValueError(
            f"cannot load CA file {os.fspath(ca)!r} ({exc.reason}); it must be a PEM certificate"
        ) from None


def server_context(
    cert: PathLike,
    key: PathLike | None,
    ca: PathLike | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A server-side TLS context (TLS >= 1.2) for :class:`~medshield.transport.TcpListener`.

    Parameters
    ----------
    cert, key
        PEM server certificate (chain) and private key (``key=None``: inside ``cert``).
    ca
        PEM CA used to verify client certificates.
    require_client_cert
        Mutual TLS: refuse clients without a certificate signed by ``ca``.
    """
    if require_client_cert and ca is None:
        raise ValueError(
            "require_client_cert=True needs ca=... (the CA that signed the client certificates)"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key, "server")
    if ca is not None:
        _load_ca(ctx, ca, "server")
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(
    ca: PathLike, cert: PathLike | None = None, key: PathLike | None = None
) -> ssl.SSLContext:
    """A client-side TLS context (TLS >= 1.2, server certificate and host name verified).

    Parameters
    ----------
    ca
        PEM CA that signed the server certificate.
    cert, key
        PEM client certificate and key, for servers that require mutual TLS.
    """
    if key is not None and cert is None:
        raise ValueError("client_context got key= without cert=; pass both for mutual TLS")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(ctx, ca, "client")
    if cert is not None:
        _load_chain(ctx, cert, key, "client")
    return ctx


@dataclass(frozen=True)
class LocalPki:
    """Paths of the PEM files written by :func:`generate_local_pki`."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write(path: Path, data: bytes, secret: bool) -> Path:
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)
    return path


def generate_local_pki(
    directory: PathLike,
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    client_name: str = "medshield-client",
    days: int = 30,
    prefix: str = "",
) -> LocalPki:
    """Write a throwaway CA and a server and client certificate signed by it.

    Parameters
    ----------
    directory
        Where to write ``{prefix}ca.pem``, ``{prefix}ca.key``, ``{prefix}server.pem``, ...
    hosts
        IP addresses and DNS names put in the server certificate (what clients connect to).
    client_name
        Common name of the client certificate.
    days
        Validity period.
    prefix
        File-name prefix (to keep several PKIs in one directory).

    Requires the ``cryptography`` package (``pip install cryptography``).
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "generate_local_pki needs the 'cryptography' package: pip install cryptography "
            "(it is in medshield's 'test' extra)"
        ) from None

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate small clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"medshield local CA {prefix}".strip())]
    )

    def build(subject: x509.Name, public_key: Any, issuer_key: Any, ca: bool, extras: list) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
        )
        for ext in extras:
            builder = builder.add_extension(ext, False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def pem_cert(cert: Any) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_cert = build(ca_name, ca_key.public_key(), ca_key, True, [])
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = build(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "server")]),
        server_key.public_key(),
        ca_key,
        False,
        [
            x509.SubjectAlternativeName(names),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = build(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_name)]),
        client_key.public_key(),
        ca_key,
        False,
        [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])],
    )
    return LocalPki(
        directory=out,
        ca_cert=_write(out / f"{prefix}ca.pem", pem_cert(ca_cert), False),
        ca_key=_write(out / f"{prefix}ca.key", pem_key(ca_key), True),
        server_cert=_write(out / f"{prefix}server.pem", pem_cert(server_cert), False),
        server_key=_write(out / f"{prefix}server.key", pem_key(server_key), True),
        client_cert=_write(out / f"{prefix}client.pem", pem_cert(client_cert), False),
        client_key=_write(out / f"{prefix}client.key", pem_key(client_key), True),
    )
