"""The coordinator service in-process against fake TLS nodes: manifest serving, health, metrics.

The fake nodes speak the real wire contract (grpc.health.v1 + ``pakr.v1.Node.Recover1`` with
an ErrorDetail trailer) and verify the canary's token exactly as a node must (tenant key,
audience = their own id), so the canary path is tested without the node implementation.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from pakr.coordinator.config import CanaryConfig, CoordinatorConfig, load_config
from pakr.coordinator.localcluster import free_ports
from pakr.coordinator.manifest_tools import manifest_nodes
from pakr.coordinator.service import serve
from pakr.node.tls import write_certificate
from pakr.proto.errors import ErrorKind, InvalidAuth, NodeRefusal
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.manifest import OperatorKey, new_manifest, sign_manifest, write_manifest
from pakr.proto.tokens import TenantKey, verify_token
from pakr.proto.v1 import coordinator_pb2 as cpb
from pakr.proto.v1 import coordinator_pb2_grpc as cpb_grpc
from pakr.proto.v1 import node_pb2 as npb
from pakr.proto.v1 import node_pb2_grpc as npb_grpc
from pakr.proto.wire import ERROR_METADATA_KEY, error_detail_to_pb
from tests.cluster.cluster_helpers import write_node_dir


@dataclass
class FakeNode(npb_grpc.NodeServicer):
    """Answers Recover1 like a node with no such user, after checking the token."""

    node_id: str
    tenant_key: TenantKey
    reject: bool = False
    calls: int = 0

    async def Recover1(
        self, request: npb.Recover1Request, context: grpc.aio.ServicerContext[object, object]
    ) -> npb.Recover1Response:
        self.calls += 1
        token = dict(context.invocation_metadata() or ()).get("authorization", "")
        try:
            if self.reject:
                raise InvalidAuth("access token rejected: unknown signing key")
            claims = verify_token(
                str(token).removeprefix("Bearer "),
                keys={self.tenant_key.kid: self.tenant_key.public_key},
                audience=self.node_id,
                now=__import__("time").time(),
            )
            assert claims.user_id == request.header.user_id == "pakr-canary"
        except InvalidAuth as exc:
            refusal = NodeRefusal(ErrorKind.INVALID_AUTH, str(exc))
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                str(exc),
                trailing_metadata=(
                    (ERROR_METADATA_KEY, error_detail_to_pb(refusal).SerializeToString()),
                ),
            )
        refusal = NodeRefusal(ErrorKind.NOT_REGISTERED, "no such user")
        await context.abort(
            grpc.StatusCode.NOT_FOUND,
            "no such user",
            trailing_metadata=(
                (ERROR_METADATA_KEY, error_detail_to_pb(refusal).SerializeToString()),
            ),
        )
        raise AssertionError("unreachable")


@dataclass
class World:
    tmp: Path
    operator: OperatorKey
    tenant: TenantKey
    configs: list[Path]
    fakes: list[FakeNode]
    manifest_path: Path
    coordinator: str
    coordinator_cert: bytes
    metrics: str

    def write_manifest(self, serial: int, key: OperatorKey | None = None) -> bytes:
        manifest = new_manifest(
            cluster_id="test",
            nodes=manifest_nodes(self.configs),
            threshold=2,
            argon2=DEV_ARGON2,
            dev=True,
            serial=serial,
        )
        write_manifest(sign_manifest(manifest, key or self.operator), self.manifest_path)
        return self.manifest_path.read_bytes()


async def _start_fake(config: Path, fake: FakeNode, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    npb_grpc.add_NodeServicer_to_server(fake, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    tls = config.parent / "tls"
    creds = grpc.ssl_server_credentials(
        [((tls / "node.key").read_bytes(), (tls / "node.crt").read_bytes())]
    )
    assert server.add_secure_port(f"127.0.0.1:{port}", creds) == port
    await server.start()
    await health.set("pakr.v1.Node", health_pb2.HealthCheckResponse.SERVING)
    return server


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    operator = OperatorKey.generate()
    tenant = TenantKey.generate("canary")
    tenant.save(tmp_path / "canary.key")
    ports = free_ports(5)
    configs = [write_node_dir(tmp_path / "nodes", i, ports[i - 1]) for i in (1, 2, 3)]
    import tomllib

    fakes = [FakeNode(tomllib.loads(c.read_text())["node"]["id"], tenant) for c in configs[:2]]
    # Node 3 has a config but nothing listens: a crashed node.
    servers = [
        await _start_fake(c, f, ports[i])
        for i, (c, f) in enumerate(zip(configs, fakes, strict=False))
    ]
    tls = tmp_path / "coord-tls"
    write_certificate(tls / "c.crt", tls / "c.key", common_name="coordinator", hosts=[])
    coord_port, metrics_port = ports[3], ports[4]
    config_path = tmp_path / "coordinator.toml"
    CoordinatorConfig(
        path=config_path,
        listen=f"127.0.0.1:{coord_port}",
        manifest=tmp_path / "manifest.json",
        insecure=False,
        tls_cert=tls / "c.crt",
        tls_key=tls / "c.key",
        canary=CanaryConfig(tmp_path / "canary.key"),
        metrics_listen=f"127.0.0.1:{metrics_port}",
        health_cache_seconds=0.0,
    ).save()
    w = World(
        tmp_path, operator, tenant, configs, fakes, tmp_path / "manifest.json",
        f"127.0.0.1:{coord_port}", (tls / "c.crt").read_bytes(), f"127.0.0.1:{metrics_port}",
    )  # fmt: skip
    w.write_manifest(1)
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(load_config(config_path), ready=lambda _a: ready.set(), stop=stop)
    )
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield w
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        for server in servers:
            await server.stop(None)


def _stub(world: World) -> tuple[grpc.aio.Channel, cpb_grpc.CoordinatorAsyncStub]:
    channel = grpc.aio.secure_channel(
        world.coordinator,
        grpc.ssl_channel_credentials(root_certificates=world.coordinator_cert),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    return channel, cpb_grpc.CoordinatorStub(channel)  # type: ignore[return-value]


async def test_get_manifest_serves_file_and_reloads_only_valid_ones(world: World) -> None:
    channel, stub = _stub(world)
    async with channel:
        first = (await stub.GetManifest(cpb.GetManifestRequest())).manifest
        assert first == world.manifest_path.read_bytes()
        second = world.write_manifest(2)
        assert (await stub.GetManifest(cpb.GetManifestRequest())).manifest == second
        # Tampered on disk: refused, the last good one keeps being served.
        doc = json.loads(second)
        doc["manifest"]["threshold"] = 3
        world.manifest_path.write_text(json.dumps(doc))
        assert (await stub.GetManifest(cpb.GetManifestRequest())).manifest == second
        # Validly signed, but by another operator: refused (the first manifest pinned the key).
        world.write_manifest(3, OperatorKey.generate())
        assert (await stub.GetManifest(cpb.GetManifestRequest())).manifest == second
        # Older serial: refused (no rollback through the coordinator).
        world.write_manifest(1)
        assert (await stub.GetManifest(cpb.GetManifestRequest())).manifest == second
        with urllib.request.urlopen(f"http://{world.metrics}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "pakr_coordinator_manifest_reload_errors_total 3.0" in text
        assert "pakr_coordinator_manifest_serial 2.0" in text


async def test_cluster_health_probes_health_and_canary(world: World) -> None:
    channel, stub = _stub(world)
    async with channel:
        report = await stub.ClusterHealth(cpb.ClusterHealthRequest())
        by_index = {n.index: n for n in report.nodes}
        assert report.threshold == 2
        assert by_index[1].serving and by_index[2].serving and by_index[1].error == ""
        assert not by_index[3].serving and "UNAVAILABLE" in by_index[3].error
        assert report.can_recover
        assert world.fakes[0].calls == 1 and world.fakes[1].calls == 1
        assert by_index[1].latency_ms > 0

        world.fakes[1].reject = True
        report = await stub.ClusterHealth(cpb.ClusterHealthRequest())
        by_index = {n.index: n for n in report.nodes}
        assert not by_index[2].serving
        assert "INVALID_AUTH" in by_index[2].error
        assert not report.can_recover
        with urllib.request.urlopen(f"http://{world.metrics}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "pakr_coordinator_can_recover 0.0" in text
        assert f'pakr_coordinator_node_up{{index="1",node="{world.fakes[0].node_id}"}} 1.0' in text


async def test_coordinator_health_service_and_busy_port(world: World, tmp_path: Path) -> None:
    channel, _ = _stub(world)
    async with channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service="pakr.v1.Coordinator"))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    # A second coordinator on the same port fails with a clear ConfigError.
    from pakr.proto.errors import ConfigError

    busy = tmp_path / "busy.toml"
    CoordinatorConfig(
        path=busy,
        listen=world.coordinator,
        manifest=world.manifest_path,
        insecure=True,
        tls_cert=None,
        tls_key=None,
        canary=None,
        metrics_listen=None,
    ).save()
    with pytest.raises(ConfigError, match="busy"):
        await serve(load_config(busy), stop=asyncio.Event())
