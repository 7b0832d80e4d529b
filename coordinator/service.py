"""The coordinator: pakr's control plane (``pakr.v1.Coordinator`` over grpc.aio + TLS).

It serves the signed manifest (GetManifest), reports per-node health (ClusterHealth) and
exports Prometheus metrics. It is deliberately **never on the path of a secret**: clients talk
to the nodes directly with the manifest they already hold, so the coordinator being down
changes nothing for registration or recovery (tests/cluster show it). It holds no data key and
sees no password, share or ciphertext.

Health of a node = its grpc.health.v1 status for ``pakr.v1.Node`` **and**, when a canary
tenant key is configured, a Recover1 for a canary user with a freshly minted token: that
exercises TLS, token verification and the store's read path. ``NotRegistered`` (or an empty
status) is the healthy answer; the canary user is never registered.

The manifest file is re-read when it changes on disk, so an operator publishes a new manifest
by replacing the file (``pakr manifest create --out`` writes atomically). A file that fails to
verify is logged and the last good manifest keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pakr.coordinator.config import CoordinatorConfig, load_config
from pakr.coordinator.health import NODE_SERVICE, TLS_NAME_OVERRIDE, probe_async
from pakr.proto.channel import pinned_aio_channel, refusal_from_trailers
from pakr.proto.errors import ConfigError, ErrorKind
from pakr.proto.hostport import dial_address, join_host_port, split_host_port
from pakr.proto.manifest import INSECURE_UNPINNED, Manifest, ManifestNode, load_manifest
from pakr.proto.messages import UserRef
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import coordinator_pb2 as cpb
from pakr.proto.v1 import coordinator_pb2_grpc as cpb_grpc
from pakr.proto.v1 import node_pb2 as npb
from pakr.proto.v1 import node_pb2_grpc as npb_grpc
from pakr.proto.wire import header_to_pb

log = logging.getLogger("pakr.coordinator")

SERVICE_NAME = "pakr.v1.Coordinator"
CANARY_TOKEN_TTL = 60
GRACE_SECONDS = 5.0
HEALTHY_CANARY_KINDS = frozenset({ErrorKind.NOT_REGISTERED})

__all__ = ["CoordinatorService", "ManifestSource", "Metrics", "run", "serve"]


def cert_not_after(pem: str) -> float:
    """The certificate's expiry as Unix time."""
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode("ascii")).not_valid_after_utc.timestamp()


class Metrics:
    """The coordinator's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pakr_coordinator_requests_total",
            "Coordinator RPCs served",
            ["rpc"],
            registry=self.registry,
        )
        self.node_up = Gauge(
            "pakr_coordinator_node_up",
            "1 when the node passed its last health probe (health + canary)",
            ["node", "index"],
            registry=self.registry,
        )
        self.probe_latency = Histogram(
            "pakr_coordinator_probe_seconds",
            "Latency of node health probes",
            ["node"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.can_recover = Gauge(
            "pakr_coordinator_can_recover",
            "1 when at least threshold nodes are healthy",
            registry=self.registry,
        )
        self.manifest_serial = Gauge(
            "pakr_coordinator_manifest_serial",
            "Serial of the manifest being served",
            registry=self.registry,
        )
        self.manifest_expires = Gauge(
            "pakr_coordinator_manifest_expires_timestamp_seconds",
            "When the served manifest expires (Unix time): clients refuse it afterwards",
            registry=self.registry,
        )
        self.cert_expires = Gauge(
            "pakr_coordinator_node_cert_expires_timestamp_seconds",
            "When each node's certificate pinned in the manifest expires (Unix time)",
            ["node", "index"],
            registry=self.registry,
        )
        self.manifest_reload_errors = Counter(
            "pakr_coordinator_manifest_reload_errors_total",
            "Manifest files on disk that failed verification (the last good one is served)",
            registry=self.registry,
        )


@dataclass
class ManifestSource:
    """The served manifest: the file's bytes plus its verified content, reloaded on change."""

    path: Path
    metrics: Metrics
    raw: bytes = b""
    manifest: Manifest | None = None
    _stamp: tuple[int, int] | None = field(default=None, repr=False)
    _pinned_key: str | None = field(default=None, repr=False)

    def current(self) -> tuple[bytes, Manifest]:
        """The latest valid manifest (``ConfigError`` only if none was ever valid)."""
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            if self.manifest is None:
                raise ConfigError(f"cannot read manifest {self.path}: {exc.strerror}") from None
            stamp = self._stamp
        if stamp != self._stamp:
            self._reload(stamp)
        assert self.manifest is not None
        return self.raw, self.manifest

    def _reload(self, stamp: tuple[int, int] | None) -> None:
        try:
            raw = self.path.read_bytes()
            document = json.loads(raw)
            signer = document.get("signature", {}).get("public_key")
            # The first manifest pins the operator key: a replaced file signed by anyone else
            # is refused rather than served to clients.
            manifest = load_manifest(document, operator_key=self._pinned_key or INSECURE_UNPINNED)
            if self.manifest is not None and manifest.serial < self.manifest.serial:
                raise ConfigError(
                    f"manifest serial {manifest.serial} is older than the served "
                    f"{self.manifest.serial}"
                )
        except (OSError, ValueError, AttributeError, ConfigError) as exc:
            if self.manifest is None:
                raise ConfigError(f"manifest {self.path} is not usable: {exc}") from None
            self.metrics.manifest_reload_errors.inc()
            log.error(
                "manifest %s refused, still serving serial %s: %s",
                self.path,
                self.manifest.serial,
                exc,
            )
            self._stamp = stamp
            return
        self.raw, self.manifest, self._stamp = raw, manifest, stamp
        self._pinned_key = self._pinned_key or signer
        self.metrics.manifest_serial.set(manifest.serial)
        self.metrics.manifest_expires.set(manifest.expires_at)
        self.metrics.cert_expires.clear()
        for node in manifest.nodes:
            if node.tls_cert_pem is not None:
                self.metrics.cert_expires.labels(node.id_hex, str(node.index)).set(
                    cert_not_after(node.tls_cert_pem)
                )
        log.info("serving manifest %s serial %s", manifest.cluster_id, manifest.serial)


class NodeProber:
    """Probes nodes over long-lived channels (one per node identity, address and cert)."""

    def __init__(
        self,
        canary_key: TenantKey | None,
        canary_user: str,
        timeout: float,
    ) -> None:
        self.canary_key = canary_key
        self.canary_user = canary_user
        self.timeout = timeout
        self._channels: dict[tuple[bytes, str, str | None], grpc.aio.Channel] = {}

    def _channel(self, node: ManifestNode) -> grpc.aio.Channel:
        key = (node.node_id, node.address, node.tls_cert_pem)
        channel = self._channels.get(key)
        if channel is None:
            pem = node.tls_cert_pem
            channel = pinned_aio_channel(
                dial_address(node.address),
                None if pem is None else pem.encode("ascii"),
                name_override=None if pem is None else TLS_NAME_OVERRIDE,
                # Pinned by hash only: verify against the system roots (the node's certificate
                # must then be CA-issued); the hash is the client SDK's business.
                system_roots=node.tls_cert_sha256 is not None,
            )
            self._channels[key] = channel
        return channel

    async def check(self, node: ManifestNode) -> cpb.NodeHealth:
        """Health + canary for one node; never raises."""
        channel = self._channel(node)
        started = time.perf_counter()
        result = await probe_async(
            channel, node.address, service=NODE_SERVICE, timeout=self.timeout
        )
        error = result.error
        if result.serving and self.canary_key is not None:
            error = await self._canary(channel, node)
        latency = (time.perf_counter() - started) * 1000
        return cpb.NodeHealth(
            node_id=node.id_hex,
            index=node.index,
            address=node.address,
            serving=not error,
            latency_ms=latency,
            error=error,
        )

    async def _canary(self, channel: grpc.aio.Channel, node: ManifestNode) -> str:
        assert self.canary_key is not None
        token = issue_token(
            self.canary_key, user_id=self.canary_user, audience=node.id_hex, ttl=CANARY_TOKEN_TTL
        )
        request = npb.Recover1Request(
            header=header_to_pb(
                secrets.token_bytes(16), UserRef(self.canary_key.tenant, self.canary_user)
            )
        )
        stub = npb_grpc.NodeStub(channel)
        try:
            await stub.Recover1(
                request, timeout=self.timeout, metadata=(("authorization", f"Bearer {token}"),)
            )
        except grpc.aio.AioRpcError as exc:
            kind, message = _refusal(exc)
            if kind in HEALTHY_CANARY_KINDS:
                return ""
            return f"canary Recover1: {exc.code().name} {kind.name}: {message}"
        return ""

    async def retain(self, nodes: tuple[ManifestNode, ...]) -> None:
        """Close channels to nodes a new manifest no longer lists (or lists differently)."""
        wanted = {(n.node_id, n.address, n.tls_cert_pem) for n in nodes}
        for key in [k for k in self._channels if k not in wanted]:
            await self._channels.pop(key).close()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _refusal(exc: grpc.aio.AioRpcError) -> tuple[ErrorKind, str]:
    refusal = refusal_from_trailers(exc)
    if refusal is not None:
        return refusal.kind, str(refusal)
    return ErrorKind.UNSPECIFIED, exc.details() or ""


class CoordinatorService(cpb_grpc.CoordinatorServicer):
    """GetManifest and ClusterHealth; health snapshots are cached briefly (probes cost RPCs)."""

    def __init__(self, source: ManifestSource, prober: NodeProber, cache_seconds: float) -> None:
        self.source = source
        self.prober = prober
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, int, cpb.ClusterHealthResponse] | None = None
        self._lock = asyncio.Lock()

    async def GetManifest(  # noqa: N802 - gRPC method name
        self, request: cpb.GetManifestRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> cpb.GetManifestResponse:
        self.source.metrics.requests.labels("GetManifest").inc()
        raw, _ = self.source.current()
        return cpb.GetManifestResponse(manifest=raw)

    async def ClusterHealth(  # noqa: N802 - gRPC method name
        self, request: cpb.ClusterHealthRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> cpb.ClusterHealthResponse:
        self.source.metrics.requests.labels("ClusterHealth").inc()
        return await self.snapshot()

    async def snapshot(self) -> cpb.ClusterHealthResponse:
        """A health report at most ``cache_seconds`` old."""
        async with self._lock:
            _, manifest = self.source.current()
            now = time.monotonic()
            if self._cached is not None:
                taken, serial, response = self._cached
                if serial == manifest.serial and now - taken < self.cache_seconds:
                    return response
            response = await self._probe_all(manifest)
            self._cached = (time.monotonic(), manifest.serial, response)
            return response

    async def _probe_all(self, manifest: Manifest) -> cpb.ClusterHealthResponse:
        await self.prober.retain(manifest.nodes)
        results = await asyncio.gather(*(self.prober.check(n) for n in manifest.nodes))
        metrics = self.source.metrics
        for node in results:
            metrics.node_up.labels(node.node_id, str(node.index)).set(1 if node.serving else 0)
            metrics.probe_latency.labels(node.node_id).observe(node.latency_ms / 1000)
        healthy = sum(1 for node in results if node.serving)
        can_recover = healthy >= manifest.threshold
        metrics.can_recover.set(1 if can_recover else 0)
        return cpb.ClusterHealthResponse(
            nodes=results, threshold=manifest.threshold, can_recover=can_recover
        )


def _server_credentials(config: CoordinatorConfig) -> grpc.ServerCredentials | None:
    if config.insecure:
        return None
    assert config.tls_cert is not None and config.tls_key is not None
    try:
        cert = config.tls_cert.read_bytes()
        key = config.tls_key.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the coordinator's TLS files: {exc}") from None
    return grpc.ssl_server_credentials([(key, cert)])


async def serve(
    config: CoordinatorConfig,
    *,
    ready: Callable[[str], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is not given)."""
    metrics = Metrics()
    source = ManifestSource(config.manifest, metrics)
    source.current()  # fail fast on a bad manifest
    canary_key = TenantKey.load(config.canary.tenant_key) if config.canary else None
    prober = NodeProber(
        canary_key,
        config.canary.user_id if config.canary else "",
        config.probe_timeout_seconds,
    )
    service = CoordinatorService(source, prober, config.health_cache_seconds)
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 64 * 1024), ("grpc.so_reuseport", 0)]
    )
    cpb_grpc.add_CoordinatorServicer_to_server(service, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    credentials = _server_credentials(config)
    try:
        port = (
            server.add_insecure_port(config.listen)
            if credentials is None
            else server.add_secure_port(config.listen, credentials)
        )
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen}: the port is busy or not allowed")
    metrics_server = None
    if config.metrics_listen is not None:
        host, metrics_port = split_host_port(config.metrics_listen, "metrics.listen")
        try:
            metrics_server, _ = start_http_server(
                metrics_port, addr=host, registry=metrics.registry
            )
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {config.metrics_listen}: {exc}") from None
    await server.start()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = join_host_port(split_host_port(config.listen, "coordinator.listen")[0], port)
    print(f"pakr coordinator listening on {address} (tls={not config.insecure})", flush=True)
    if ready is not None:
        maybe = ready(address)
        if maybe is not None:
            await maybe
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health.enter_graceful_shutdown()
    await server.stop(GRACE_SECONDS)
    await prober.close()
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
    print("pakr coordinator stopped", flush=True)


def run(config_path: str | os.PathLike[str]) -> int:
    """``pakr coordinator serve --config F``: load, serve until SIGTERM, exit 0."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    config = load_config(Path(config_path))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))
    return 0
