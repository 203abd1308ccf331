"""The healthcare centre as a small certificate authority for a PE-HEALTH deployment.

Threat model (``docs/threat-models.md``, PE-HEALTH): only registered parties may take part.
Every link (sensor -> server, centre -> server, server -> server, server -> centre) is
mutual TLS with certificates issued by the centre's CA, and a party's identity is the
common name (CN) of its certificate: ``centre``, ``server0``, ``server1`` or
``sensor-<id>``. A peer whose certificate is not signed by that CA fails the TLS handshake;
a peer with a valid certificate but the wrong role (a sensor trying to deploy a model, a
sensor posing as the other server) is refused by :func:`require_role`.

The CA key stays with the centre (``ca.key``, mode 0600); each party receives ``ca.pem``
plus its own ``<name>.pem`` / ``<name>.key``. Keys are EC P-256 from the OS random source.
Nothing in this module logs or prints key material.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ROLES",
    "PartyCredentials",
    "init_ca",
    "issue",
    "load_credentials",
    "server_ssl_context",
    "client_ssl_context",
    "peer_name",
    "role_of",
    "require_role",
    "AccessDenied",
]

ROLES = ("centre", "server", "sensor")
_NAME = re.compile(r"^(centre|server0|server1|sensor-[A-Za-z0-9_.-]{1,64})$")
_DEFAULT_HOSTS = ("127.0.0.1", "localhost")


class AccessDenied(PermissionError):
    """A peer authenticated by TLS but not allowed to do what it asked (wrong role)."""


@dataclass(frozen=True)
class PartyCredentials:
    """The PEM files one party needs: the deployment CA and its own certificate and key."""

    name: str
    ca: Path
    cert: Path
    key: Path


def _crypto() -> Any:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "issuing credentials needs the 'cryptography' package (pip install cryptography); "
            "only the healthcare centre needs it, the other parties only read PEM files"
        ) from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def check_name(name: str) -> str:
    """Validate a party name (``centre``, ``server0``, ``server1`` or ``sensor-<id>``)."""
    if not _NAME.match(name):
        raise ValueError(
            f"invalid party name {name!r}: use 'centre', 'server0', 'server1' or "
            "'sensor-<id>' (id: letters, digits, '_', '.', '-', at most 64)"
        )
    return name


def role_of(name: str) -> str:
    """``"centre"``, ``"server"`` or ``"sensor"`` for a valid party name."""
    check_name(name)
    return "server" if name.startswith("server") else name.split("-", 1)[0]


def init_ca(directory: str | Path, *, days: int = 365, name: str = "medshield PE-HEALTH CA") -> Path:
    """Create the deployment CA (``ca.pem`` and ``ca.key``) in ``directory``.

    Refuses to overwrite an existing CA (that would lock out every issued party).
    """
    x509, hashes, serialization, ec, _, NameOID = _crypto()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.key").exists():
        raise FileExistsError(
            f"{out / 'ca.key'} already exists; reuse that CA, or delete the directory to start "
            "a new deployment (all parties then need new credentials)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write(out / "ca.key", _pem_key(key, serialization), secret=True)
    _write(out / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return out / "ca.pem"


def issue(
    directory: str | Path,
    name: str,
    *,
    hosts: Sequence[str] = _DEFAULT_HOSTS,
    days: int = 90,
    out: str | Path | None = None,
) -> PartyCredentials:
    """Issue a certificate for party ``name`` signed by the CA in ``directory``.

    Parameters
    ----------
    directory
        Where :func:`init_ca` wrote ``ca.pem`` / ``ca.key``.
    name
        ``centre``, ``server0``, ``server1`` or ``sensor-<id>`` (the certificate's CN).
    hosts
        IP addresses / DNS names the party listens on (subject alternative names; servers
        and the centre are verified against them).
    out
        Directory for ``<name>.pem`` / ``<name>.key`` (default ``directory``); ``ca.pem`` is
        copied there too.
    """
    x509, hashes, serialization, ec, EKU, NameOID = _crypto()
    check_name(name)
    ca_dir = Path(directory)
    if not (ca_dir / "ca.key").is_file():
        raise FileNotFoundError(
            f"no CA in {ca_dir}: run `medshield secure init-ca --dir {ca_dir}` first (on the "
            "healthcare centre)"
        )
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[Any] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]), False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    cert = builder.sign(ca_key, hashes.SHA256())
    dest = Path(out) if out is not None else ca_dir
    dest.mkdir(parents=True, exist_ok=True)
    if dest != ca_dir:
        _write(dest / "ca.pem", (ca_dir / "ca.pem").read_bytes(), secret=False)
    _write(dest / f"{name}.key", _pem_key(key, serialization), secret=True)
    _write(dest / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return PartyCredentials(name, dest / "ca.pem", dest / f"{name}.pem", dest / f"{name}.key")


def load_credentials(directory: str | Path, name: str) -> PartyCredentials:
    """The credential files of party ``name`` in ``directory`` (checked to exist)."""
    check_name(name)
    d = Path(directory)
    creds = PartyCredentials(name, d / "ca.pem", d / f"{name}.pem", d / f"{name}.key")
    for path in (creds.ca, creds.cert, creds.key):
        if not path.is_file():
            raise FileNotFoundError(
                f"credential file {path} is missing; issue it on the healthcare centre with "
                f"`medshield secure issue --dir <ca dir> --name {name}` and copy it here"
            )
    return creds


def server_ssl_context(creds: PartyCredentials) -> ssl.SSLContext:
    """A listening context: TLS >= 1.2, client certificate signed by the CA required."""
    from medshield.transport.tls import server_context

    return server_context(creds.cert, creds.key, ca=creds.ca, require_client_cert=True)


def client_ssl_context(creds: PartyCredentials) -> ssl.SSLContext:
    """A connecting context: verifies the server against the CA, presents our certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=str(creds.ca))
    ctx.load_cert_chain(str(creds.cert), str(creds.key))
    return ctx


def peer_name(sock: Any) -> str:
    """The CN of the certificate the peer presented on a TLS socket.

    Raises
    ------
    AccessDenied
        If the socket is not TLS, or the peer presented no certificate or an invalid name.
    """
    getpeercert = getattr(sock, "getpeercert", None)
    cert = getpeercert() if getpeercert is not None else None
    if not cert:
        raise AccessDenied(
            "the peer presented no certificate; every party needs one issued by the "
            "healthcare centre (medshield secure issue)"
        )
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                if not _NAME.match(value):
                    raise AccessDenied(f"certificate name {value[:80]!r} is not a party name")
                return str(value)
    raise AccessDenied("the peer's certificate has no common name")


def require_role(name: str, *allowed: str) -> None:
    """Raise :class:`AccessDenied` unless party ``name`` has one of the ``allowed`` roles/names."""
    if name in allowed or role_of(name) in allowed:
        return
    raise AccessDenied(
        f"party {name!r} may not do this (allowed: {', '.join(allowed)}); it is authenticated "
        "but registered with another role"
    )


def _pem_key(key: Any, serialization: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)
