"""The node's self-signed TLS certificate (ECDSA P-256; grpcio's TLS stack rejects Ed25519).

Clients do not trust it through a CA: the signed cluster manifest pins the certificate (or
its SHA-256), so a self-signed certificate is the normal case, not a shortcut. The SAN
covers 127.0.0.1, localhost and the host the node listens on.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pakr.proto.files import write_private_file
from pakr.proto.hostport import WILDCARD_HOSTS

VALIDITY_DAYS = 3650


def _san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ["127.0.0.1", "::1", "localhost", *hosts]:
        if host in seen or host in WILDCARD_HOSTS:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_self_signed(
    common_name: str, hosts: list[str], *, days: int = VALIDITY_DAYS
) -> tuple[bytes, bytes]:
    """A fresh P-256 key and self-signed certificate: (cert PEM, key PEM).

    Used for nodes and for the coordinator alike: whatever pakr pins by certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san_entries(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def write_certificate(
    cert_path: Path,
    key_path: Path,
    common_name: str,
    hosts: list[str],
    *,
    days: int = VALIDITY_DAYS,
) -> None:
    """Write a fresh key (0600) and its self-signed certificate covering ``hosts``."""
    cert_pem, key_pem = make_self_signed(common_name, hosts, days=days)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(key_path, key_pem)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert_pem)
