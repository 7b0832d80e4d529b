"""Property 3 (docs/security.md): a network attacker learns nothing; TLS is on by default and node
certificates are pinned by the signed manifest; plaintext exists only in dev.

Against a live 2-of-3 cluster: a recording TCP relay between the SDK and every node shows
only TLS records (no user id, password, secret, token or share in the bytes); nodes refuse
plaintext; an impostor on a node's address with any other certificate (same names, other
key) is refused by the SDK before it receives a single RPC, whether the manifest pins the
certificate or only its SHA-256; a manifest without pins is refused unless it is dev.
What a node itself sees of a recovery (a blinded element) is covered by property 1's
``test_traffic_adds_nothing_beyond_the_database``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import pakr
from pakr._transport import GrpcTransport
from pakr.coordinator.localcluster import LocalCluster
from pakr.errors import NodeUnreachable
from pakr.node.tls import make_self_signed
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import OperatorKey, load_manifest, new_manifest, sign_manifest
from pakr.proto.messages import UserRef
from tests.security.sec_live import client_for
from tests.security.sec_malicious_node import MaliciousNode

pytestmark = [pytest.mark.timeout(180), pytest.mark.cluster(nodes=3, threshold=2)]


class Relay:
    """A TCP relay on 127.0.0.1 that forwards to ``target`` and records every byte."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.seen = bytearray()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.address = ""

    def start(self) -> Relay:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(5)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    self.seen.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def relays(cluster: LocalCluster) -> Iterator[dict[int, Relay]]:
    made = {node.index: Relay(node.address).start() for node in cluster.nodes}
    try:
        yield made
    finally:
        for relay in made.values():
            relay.stop()


def test_a_network_observer_sees_only_tls(cluster: LocalCluster, relays: dict[int, Relay]) -> None:
    manifest = cluster.manifest()
    relayed = replace(
        manifest,
        nodes=tuple(replace(n, address=relays[n.index].address) for n in manifest.nodes),
    )
    tokens: list[str] = []
    mint = pakr.dev_token_provider(cluster.tenant_key_path)

    def provider(user: str, audience: str) -> str:
        tokens.append(mint(user, audience))
        return tokens[-1]

    user = "observed-user-" + os.urandom(6).hex()
    password = "observed password " + os.urandom(6).hex()
    secret = os.urandom(64)

    async def run() -> None:
        client = pakr.AsyncClient(
            relayed, tenant=cluster.tenant, token_provider=provider, deadline=5.0
        )
        try:
            await client.register(user, password, secret)
            assert await client.recover(user, password) == secret
            await client.change_password(user, password, password + "2")
            await client.delete(user)
        finally:
            await client.close()

    asyncio.run(run())
    wire_bytes = bytes(b"".join(bytes(r.seen) for r in relays.values()))
    assert all(r.connections for r in relays.values()), "traffic bypassed a relay"
    assert len(wire_bytes) > 10_000
    assert wire_bytes[:1] == b"\x16" or b"\x16\x03" in wire_bytes  # TLS handshake records
    for name, needle in {
        "user id": user.encode(),
        "password": password.encode(),
        "secret": secret[:16],
        "tenant key id": f"{cluster.tenant}:1".encode(),
        "rpc name": b"Recover2",
        "authorization header": b"authorization",
    }.items():
        assert needle not in wire_bytes, f"{name} visible on the wire"
    assert tokens and not any(t.encode()[:40] in wire_bytes for t in tokens)


def test_nodes_refuse_plaintext(cluster: LocalCluster) -> None:
    node = cluster.node(1)
    channel = grpc.insecure_channel(node.address)
    try:
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=3
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()
    assert "insecure = false" in node.config.read_text()  # `pakr node init` default


def test_impostor_with_another_certificate_gets_nothing(cluster: LocalCluster) -> None:
    with client_for(cluster) as c:
        c.register("pinned", "pw", b"pinned secret")
    target = cluster.node(3)
    ref = next(n.ref for n in cluster.manifest().nodes if n.index == 3)
    cert, key = make_self_signed("node3", ["127.0.0.1", "localhost"])  # same names, other key
    cluster.kill_node(3)
    impostor = MaliciousNode(ref, target.address, cert, key).start()
    try:
        with client_for(cluster) as c:
            assert c.recover("pinned", "pw") == b"pinned secret"  # nodes 1 and 2 suffice
        assert impostor.calls == [] and impostor.tokens == []  # the handshake failed first
        pem = target.tls_cert.read_text()

        async def by_hash(sha: bytes) -> object:
            transport = GrpcTransport(ref, target.address, tls_cert_sha256=sha)
            try:
                return await transport.recover1(UserRef(cluster.tenant, "pinned"), "t", timeout=3)
            finally:
                await transport.close()

        with pytest.raises(NodeUnreachable, match="does not match"):
            asyncio.run(by_hash(hashlib.sha256(_der(pem)).digest()))
        assert impostor.calls == []
    finally:
        impostor.stop()
        cluster.start_node(3)


def _der(pem: str) -> bytes:
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem)


def test_plaintext_only_in_dev(cluster: LocalCluster) -> None:
    manifest = cluster.manifest()
    ref = manifest.nodes[0].ref
    with pytest.raises(ConfigError, match="dev"):
        GrpcTransport(ref, manifest.nodes[0].address)  # no pin and not insecure
    plain_nodes = tuple(replace(n, tls_cert_pem=None, tls_cert_sha256=None) for n in manifest.nodes)
    operator = OperatorKey.generate("operator")
    dev = new_manifest(
        cluster_id="plain", nodes=plain_nodes, threshold=2, dev=True, argon2=manifest.argon2
    )
    assert load_manifest(
        sign_manifest(dev, operator), operator_key=operator.public_key_text
    ).dev  # dev: plaintext allowed
    with pytest.raises(ConfigError, match="plaintext"):
        load_manifest(
            sign_manifest(replace(dev, dev=False), operator), operator_key=operator.public_key_text
        )
