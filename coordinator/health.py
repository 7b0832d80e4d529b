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

from pakr.proto import channel
from pakr.proto.hostport import dial_address
from pakr.proto.wire import MAX_MESSAGE_BYTES

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


def pinned_channel(
    address: str, cert_pem: bytes | None, *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> grpc.Channel:
    """A blocking channel to ``address`` trusting exactly ``cert_pem`` (plaintext when None),
    verified as ``localhost`` (see ``TLS_NAME_OVERRIDE``)."""
    return channel.pinned_channel(
        dial_address(address),
        cert_pem,
        name_override=None if cert_pem is None else TLS_NAME_OVERRIDE,
        max_message_bytes=max_message_bytes,
    )


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
