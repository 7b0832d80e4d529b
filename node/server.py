"""Running a node: the grpc.aio server (TLS, 64 KiB messages), health, metrics, drain.

:class:`NodeServer` is what both ``pakr node serve`` and the in-process tests start: it
opens the store, builds the servicer, binds the port (refusing a busy one instead of sharing
it through SO_REUSEPORT), serves ``grpc.health.v1`` (``""`` and ``pakr.v1.Node`` SERVING
once ready, NOT_SERVING while draining), optionally Prometheus metrics, and prunes the audit
log past its retention. :func:`serve_forever` adds the signal handling: SIGTERM/SIGINT drain
in-flight calls, then close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from pakr.node.auth import Authenticator, load_tenant_keys
from pakr.node.config import NodeConfig, keys_share_data_directory, sqlite_path
from pakr.node.crash import CrashPoints
from pakr.node.hpke_keys import load_private_key
from pakr.node.keyrotation import KeyPolicy
from pakr.node.metrics import NodeMetrics
from pakr.node.ratelimit import RateLimiter
from pakr.node.servicer import NodeServicer, add_to_server
from pakr.node.store import Store, open_store
from pakr.node.store.keys import KeyRing
from pakr.node.store.sealing import Sealer
from pakr.node.sweeper import Sweeper
from pakr.node.web import WebListener
from pakr.proto import wire
from pakr.proto.errors import ConfigError
from pakr.proto.hostport import join_host_port, split_host_port
from pakr.proto.messages import NodeRef
from pakr.proto.reset import nonce_key as reset_nonce_key

log = logging.getLogger("pakr.node.server")

SERVICE_NAME = "pakr.v1.Node"
DRAIN_SECONDS = 10.0
AUDIT_PRUNE_INTERVAL = 3600.0

OVERSIZE_READ_BYTES = 16 * wire.MAX_MESSAGE_BYTES

SERVER_OPTIONS = (
    # Read up to 16 x the message limit so an oversize body reaches the servicer, which
    # answers it with the typed INVALID_REQUEST detail; gRPC alone would answer a bare
    # RESOURCE_EXHAUSTED. Beyond that gRPC refuses it unread (still bounded memory).
    ("grpc.max_receive_message_length", OVERSIZE_READ_BYTES),
    ("grpc.max_send_message_length", wire.MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # a busy port must fail, not be silently shared
    ("grpc.max_concurrent_streams", 1000),
)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} ({path}): cannot read: {exc.strerror}") from None


def warn_about_key_placement(config: NodeConfig) -> None:
    """Warn when keys sit with the data: one copy of the directory would then hold both."""
    data_dir = (
        sqlite_path(config.storage_url).parent.resolve()
        if config.storage_url.startswith("sqlite:///")
        else None
    )
    key_file = config.data_key.file
    if keys_share_data_directory(config) or (
        key_file is not None and data_dir is not None and key_file.parent.resolve() == data_dir
    ):
        log.warning(
            "the key directory or data key file shares a directory with the database: move"
            " them apart (keys.dir, data_key.file) so a copy of one never carries the other",
            extra={"fields": {"keys_dir": str(config.keys_dir), "database_dir": str(data_dir)}},
        )


def node_crash(crash: CrashPoints | None) -> Callable[[str], None] | None:
    """The rotation crash hook of armed ``rotate.*`` crash points, if any."""
    points = crash if crash is not None else CrashPoints.from_env()
    if points.at is None or not points.at.startswith("rotate."):
        return None
    return lambda point: points.hit("rotate", point)


class NodeServer:
    """One running node identity."""

    def __init__(
        self,
        config: NodeConfig,
        server: grpc.aio.Server,
        store: Store,
        servicer: NodeServicer,
        health: health_aio.HealthServicer,
        metrics: NodeMetrics,
        port: int,
        metrics_port: int | None,
    ) -> None:
        self.config = config
        self.server = server
        self.store = store
        self.servicer = servicer
        self.health = health
        self.metrics = metrics
        self.port = port
        self.metrics_port = metrics_port
        self._prune_task: asyncio.Task[None] | None = None
        self.sweeper: Sweeper | None = None
        self.web: WebListener | None = None
        self._stopped = False

    @property
    def address(self) -> str:
        host, _ = split_host_port(self.config.listen, "node.listen")
        return join_host_port(host, self.port)

    @classmethod
    async def start(
        cls,
        config: NodeConfig,
        *,
        crash: CrashPoints | None = None,
        clock: Callable[[], float] = time.time,
    ) -> NodeServer:
        """Open the store and start serving; ``ConfigError`` on a bad config or busy port."""
        keys = load_tenant_keys(config.tenants)
        data_key = config.data_key.load()
        hpke_key = load_private_key(config.hpke_files())
        credentials = None
        if not config.insecure:
            assert config.tls_cert is not None and config.tls_key is not None
            cert = _read(config.tls_cert, "tls.cert")
            key = _read(config.tls_key, "tls.key")
            credentials = grpc.ssl_server_credentials([(key, cert)])
        else:
            log.warning(
                "INSECURE: serving plaintext gRPC without TLS (loopback only); never in production",
                extra={"fields": {"listen": config.listen}},
            )
        warn_about_key_placement(config)
        keyring = KeyRing(data_key, config.keys_dir)
        store = await open_store(config.storage_url, Sealer(data_key, keyring))
        metrics = NodeMetrics()
        server: grpc.aio.Server | None = None
        try:
            limits = config.rate_limits
            servicer = NodeServicer(
                node=NodeRef(node_id=config.node_id, index=config.index),
                store=store,
                auth=Authenticator(config.node_id_hex, keys),
                limiter=RateLimiter(
                    limits.user_rate, limits.user_burst, limits.peer_rate, limits.peer_burst
                ),
                metrics=metrics,
                crash=crash if crash is not None else CrashPoints.from_env(),
                clock=clock,
                crypto_thread=config.crypto_thread,
                reset_key=reset_nonce_key(data_key),
                hpke_key=hpke_key,
            )
            server = grpc.aio.server(options=SERVER_OPTIONS)
            add_to_server(servicer, server)
            health = health_aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health, server)
            try:
                if credentials is None:
                    port = server.add_insecure_port(config.listen)
                else:
                    port = server.add_secure_port(config.listen, credentials)
            except RuntimeError:
                port = 0
            if port == 0:
                raise ConfigError(
                    f"cannot listen on {config.listen}: the port is in use or the address is"
                    " not available on this host; pick another node.listen"
                )
            metrics_port = None
            if config.metrics_listen is not None:
                host, mport = split_host_port(config.metrics_listen, "metrics.listen")
                try:
                    metrics_port = metrics.serve(host, mport)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot serve metrics on {config.metrics_listen}: {exc.strerror}"
                    ) from None
            await server.start()
            for service in ("", SERVICE_NAME):
                await health.set(service, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            metrics.stop()
            if server is not None:
                await server.stop(None)
            await store.close()
            raise
        node = cls(config, server, store, servicer, health, metrics, port, metrics_port)
        if config.web is not None:
            try:
                node.web = await WebListener.start(config.web, servicer)
            except BaseException:
                await node.stop(None)
                raise
        node._prune_task = asyncio.create_task(node._prune_audit_forever())
        policy = KeyPolicy.for_node(
            config.node_id, config.key_roll_seconds, config.key_retention_seconds
        )
        node.sweeper = Sweeper(
            store,
            keyring,
            policy,
            metrics,
            clock=clock,
            interval=config.sweep_seconds,
            crash=node_crash(crash),
        )
        node.sweeper.start()
        log.info(
            "node serving",
            extra={
                "fields": {
                    "node_id": config.node_id_hex,
                    "index": config.index,
                    "address": node.address,
                    "tls": not config.insecure,
                    "metrics_port": metrics_port,
                    "web_port": None if node.web is None else node.web.port,
                }
            },
        )
        return node

    async def _prune_audit_forever(self) -> None:
        retention = self.config.audit_retention_days * 86400.0
        while True:
            try:
                pruned = await self.store.prune_audit(time.time() - retention)
                if pruned:
                    log.info("pruned audit rows", extra={"fields": {"rows": pruned}})
            except Exception:
                log.exception("audit pruning failed")
            await asyncio.sleep(AUDIT_PRUNE_INTERVAL)

    async def stop(self, grace: float | None = DRAIN_SECONDS) -> None:
        """Drain: report NOT_SERVING, let in-flight calls finish (``grace`` s), close."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        if self.web is not None:
            await self.web.stop(grace)
        if self.sweeper is not None:
            await self.sweeper.stop()
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
        await self.server.stop(grace)
        self.servicer.close()
        self.metrics.stop()
        await self.store.close()
        log.info("node stopped", extra={"fields": {"node_id": self.config.node_id_hex}})


async def serve_forever(
    config: NodeConfig, *, on_ready: Callable[[NodeServer], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT, then drain gracefully."""
    node = await NodeServer.start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(node)
    try:
        await stop.wait()
        log.info("signal received: draining")
    finally:
        await node.stop()
