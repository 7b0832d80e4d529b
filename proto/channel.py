"""The gRPC channel every pakr client opens: TLS pinned to one certificate, one option set,
and the one reader of a node's typed refusal from a failed call's trailers.

The SDK's node transport, the coordinator's node prober and the CLI's health probes and
coordinator client all dial through :func:`pinned_channel` / :func:`pinned_aio_channel`, so
a channel option (retries, keepalive, reconnect backoff, message size) is decided here once.

Pinning: ``cert_pem`` is the channel's only trust root, so a node presenting any other
certificate fails the handshake; ``None`` means plaintext (dev clusters on loopback only).
``name_override`` verifies the certificate against that name instead of the dialled host;
the coordinator side uses ``localhost`` (every certificate pakr makes carries it) to reach a
node listening on a wildcard address. ``system_roots`` trusts the system's CAs instead of a
pin (a manifest that pins only a certificate hash, checked by the SDK itself).
"""

from __future__ import annotations

import grpc
import grpc.aio

from pakr.proto.errors import MalformedMessage, NodeRefusal
from pakr.proto.wire import ERROR_METADATA_KEY, MAX_MESSAGE_BYTES, error_detail_from_bytes

ChannelOptions = list[tuple[str, str | int]]

# A larger bound for the control plane (the coordinator serves whole manifests).
CONTROL_MESSAGE_BYTES = 4 * 1024 * 1024


def channel_options(
    *, name_override: str | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> ChannelOptions:
    """pakr's channel options: no transparent retries (a retry is the caller's decision: it
    may spend a guess), keepalive, a quick reconnect after a node comes back, and the
    protocol's message bound."""
    options: ChannelOptions = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.enable_retries", 0),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    if name_override is not None:
        options.append(("grpc.ssl_target_name_override", name_override))
    return options


def _credentials(cert_pem: bytes | None, system_roots: bool) -> grpc.ChannelCredentials | None:
    if cert_pem is not None:
        return grpc.ssl_channel_credentials(root_certificates=cert_pem)
    return grpc.ssl_channel_credentials() if system_roots else None


def pinned_channel(
    target: str,
    cert_pem: bytes | None,
    *,
    name_override: str | None = None,
    system_roots: bool = False,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A blocking channel to ``target`` trusting exactly ``cert_pem`` (plaintext when None)."""
    options = channel_options(name_override=name_override, max_message_bytes=max_message_bytes)
    credentials = _credentials(cert_pem, system_roots)
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def pinned_aio_channel(
    target: str,
    cert_pem: bytes | None,
    *,
    name_override: str | None = None,
    system_roots: bool = False,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> grpc.aio.Channel:
    """The asyncio twin of :func:`pinned_channel`."""
    options = channel_options(name_override=name_override, max_message_bytes=max_message_bytes)
    credentials = _credentials(cert_pem, system_roots)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)


def refusal_from_trailers(error: grpc.RpcError) -> NodeRefusal | None:
    """The typed refusal a node put in the failed call's ``pakr-error-bin`` trailer; ``None``
    when there is none or it does not parse (the status code is then all there is)."""
    trailing = getattr(error, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == ERROR_METADATA_KEY and isinstance(value, bytes):
            try:
                return error_detail_from_bytes(value)
            except MalformedMessage:
                return None
    return None
