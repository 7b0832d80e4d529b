"""Probing a node's liveness: grpc.health.v1 over TLS pinned to the node's own certificate.

The local cluster waits on these probes before it hands out a manifest, and the coordinator's
ClusterHealth RPC reports them per node. A probe never carries a secret: it is the standard
gRPC health check, optionally followed (in :mod:`pakr.coordinator.service`) by a Recover1 on
a canary user, which only reads a user's public status.

Both a blocking and an asyncio variant exist because the local cluster runs in plain scripts
and test fixtures, while the coordinator service is a ``grpc.aio`` server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The gRPC health service names a node reports SERVING once it is ready (node CLI contract).
NODE_SERVICE = "pakr.v1.Node"
# Every certificate pakr generates carries DNS:localhost, so a probe by IP address can still
# verify the pinned certificate when the node listens on a host name that does not resolve
# identically here (e.g. 0.0.0.0).
TLS_NAME_OVERRIDE = "localhost"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one health probe saw: ``serving`` plus the round trip, or why it failed."""

    address: str
    serving: bool
    latency_ms: float
    error: str = ""


def channel_credentials(cert_pem: bytes | None) -> grpc.ChannelCredentials | None:
    """TLS credentials trusting exactly ``cert_pem`` (``None`` means a plaintext channel)."""
    if cert_pem is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=cert_pem)


def channel_options(cert_pem: bytes | None) -> list[tuple[str, str | int]]:
    """Options every pakr probe channel uses (TLS name override for pinned self-signed certs)."""
    options: list[tuple[str, str | int]] = [("grpc.enable_retries", 0)]
    if cert_pem is not None:
        options.append(("grpc.ssl_target_name_override", TLS_NAME_OVERRIDE))
    return options


def pinned_channel(address: str, cert_pem: bytes | None) -> grpc.Channel:
    """A blocking channel to ``address`` trusting exactly ``cert_pem`` (plaintext when None)."""
    target = dial_address(address)
    credentials = channel_credentials(cert_pem)
    options = channel_options(cert_pem)
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def dial_address(address: str) -> str:
    """Where to connect for a listen address: a wildcard host is reached over loopback."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        return f"127.0.0.1:{port}"
    return address


def _status_error(response: health_pb2.HealthCheckResponse) -> str:
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return f"health status {name}"


def _rpc_error(error: grpc.RpcError) -> str:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    name = code.name if code is not None else "UNKNOWN"
    return f"{name}: {details}" if details else name


def probe(
    address: str,
    cert_pem: bytes | None,
    *,
    service: str = NODE_SERVICE,
    timeout: float = 2.0,
) -> ProbeResult:
    """One blocking grpc.health.v1 Check of ``service`` at ``address``."""
    channel = pinned_channel(address, cert_pem)
    started = time.perf_counter()
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        elapsed = (time.perf_counter() - started) * 1000
        return ProbeResult(address, False, elapsed, _rpc_error(error))
    finally:
        channel.close()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return ProbeResult(address, False, elapsed, _status_error(response))
    return ProbeResult(address, True, elapsed)


async def probe_async(
    channel: grpc.aio.Channel,
    address: str,
    *,
    service: str = NODE_SERVICE,
    timeout: float = 2.0,
) -> ProbeResult:
    """One grpc.health.v1 Check over an existing asyncio ``channel``."""
    started = time.perf_counter()
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as error:
        elapsed = (time.perf_counter() - started) * 1000
        return ProbeResult(address, False, elapsed, _rpc_error(error))
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return ProbeResult(address, False, elapsed, _status_error(response))
    return ProbeResult(address, True, elapsed)
