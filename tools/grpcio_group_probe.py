"""Which TLS key-exchange group does this grpcio negotiate between its own client and server?

Measures what pakr's node and SDK would agree on with the grpcio installed in the running
interpreter: a grpc server with a P-256 self-signed certificate (as pakr's nodes have), a
client trusting exactly that certificate, and a loopback relay that reads the clear-text
hellos between them. Needs only grpcio and cryptography, so it runs in a scratch venv holding
an older grpcio (how the pyproject floor was chosen):

    python -m venv /tmp/g && /tmp/g/bin/pip install grpcio==1.80.0 cryptography
    PYTHONPATH=. /tmp/g/bin/python tools/grpcio_group_probe.py

Prints one JSON line: grpcio version, negotiated group, HelloRetryRequest or not, and the
groups the client sent key shares for.
"""

from __future__ import annotations

import datetime
import json
import sys
from concurrent import futures

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.security.hello_tap import HelloTap
from tests.security.tls_hello import group_name

METHOD = "/probe.Probe/Echo"


def _certificate() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def main() -> int:
    cert, key = _certificate()
    handler = grpc.method_handlers_generic_handler(
        "probe.Probe", {"Echo": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    server.start()
    try:
        with HelloTap(f"127.0.0.1:{port}") as tap:
            channel = grpc.secure_channel(
                tap.address,
                grpc.ssl_channel_credentials(root_certificates=cert),
                options=[("grpc.ssl_target_name_override", "localhost")],
            )
            try:
                echo = channel.unary_unary(METHOD)
                assert echo(b"ping", timeout=10) == b"ping"
            finally:
                channel.close()
            (handshake,) = [h for h in tap.handshakes() if h]
    finally:
        server.stop(None)
    shares = [group_name(g) for g, _ in handshake.client_hellos[0].key_shares]
    supported = [group_name(g) for g in handshake.client_hellos[0].supported_groups]
    print(
        json.dumps(
            {
                "grpcio": grpc.__version__,
                "group": group_name(handshake.group),
                "hello_retry": handshake.retried,
                "client_key_shares": shares,
                "client_supported_groups": supported,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
