"""Post-quantum transport: each TLS listener of pakr negotiates X25519MLKEM768 with its clients.

"Harvest now, decrypt later": traffic recorded today must not open once a quantum computer
breaks elliptic curves. The hybrid group X25519MLKEM768 (code point 0x11EC) keeps the TLS
session keys safe if either X25519 or ML-KEM-768 holds. grpcio's BoringSSL offers and picks it
by default from grpcio 1.83.0 on (1.82.3 and older offered P-256 only); nothing in pakr configures
it, so these tests hold it in place: a relay between a real client and a real server process
reads the clear-text ServerHello and fails on anything else (X25519, P-256, a retry).

Listeners: the node's gRPC port (SDK and coordinator as clients), the coordinator's gRPC port
(the CLI's health/manifest client). The metrics ports of nodes and coordinator are plain HTTP
(no secret crosses them). Stacks that cannot do the hybrid group are measured too, so the
docs' claims about them are checked: Python's ``ssl`` (OpenSSL 3.0 here; the SDK's
certificate fetch for hash-pinned manifests) and Node.js's ``tls`` (the TypeScript SDK's
transport, which @grpc/grpc-js builds on).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import ssl
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.version import Version

import pakr
from pakr._transport import GrpcTransport, fetch_pinned_certificate
from pakr.coordinator.health import probe
from pakr.coordinator.localcluster import COORDINATOR_SERVICE, LocalCluster
from pakr.coordinator.service import NodeProber
from pakr.proto.messages import UserRef
from tests.security.hello_tap import HelloTap
from tests.security.tls_hello import (
    HRR_RANDOM,
    HYBRID_CLIENT_SHARE_LEN,
    HYBRID_SERVER_SHARE_LEN,
    X25519,
    X25519MLKEM768,
    Handshake,
    TlsParseError,
    group_name,
    parse_client_hello,
    parse_handshake,
    parse_server_hello,
)

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.cluster(nodes=3, threshold=2, with_coordinator=True),
]

TLS13 = 0x0304
NODE_SCRIPT = Path(__file__).with_name("node_tls_group.mjs")
ROOT = Path(__file__).resolve().parents[2]


def assert_hybrid(handshakes: list[Handshake], who: str) -> None:
    """Every connection a tap saw did a TLS 1.3 key exchange over X25519MLKEM768, first try."""
    seen = [h for h in handshakes if h]
    assert seen, f"{who}: no TLS handshake went through the tap"
    for handshake in seen:
        assert handshake.group == X25519MLKEM768, f"{who}: {handshake.describe()}"
        assert not handshake.retried, f"{who}: {handshake.describe()}"
        (server,) = handshake.server_hellos
        assert server.version == TLS13
        assert server.share_len == HYBRID_SERVER_SHARE_LEN  # an ML-KEM ciphertext + X25519
        first_share = handshake.client_hellos[0].key_shares[0]
        assert first_share == (X25519MLKEM768, HYBRID_CLIENT_SHARE_LEN), handshake.describe()


# grpcio 1.82.3 and older offer P-256 only; measured with tools/grpcio_group_probe.py.
FIRST_HYBRID_GRPCIO = Version("1.83.0")


def test_grpcio_floor_keeps_the_hybrid_default() -> None:
    """No install pyproject allows can fall back: every allowed grpcio is >= 1.83.0."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name in {"grpcio", "grpcio-health-checking"}:
            assert not requirement.specifier.contains("1.82.3"), requirement
            floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
            assert floors and min(floors) >= FIRST_HYBRID_GRPCIO, requirement
    assert Version(grpc.__version__) >= FIRST_HYBRID_GRPCIO


# -- the parser, on bytes built by hand ------------------------------------------------------


def _vec(data: bytes, size: int) -> bytes:
    return len(data).to_bytes(size, "big") + data


def _ext(kind: int, data: bytes) -> bytes:
    return kind.to_bytes(2, "big") + _vec(data, 2)


def _handshake_record(msg_type: int, body: bytes) -> bytes:
    message = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + _vec(message, 2)


def client_hello(groups: list[int], shares: list[tuple[int, int]]) -> bytes:
    supported = _vec(b"".join(g.to_bytes(2, "big") for g in groups), 2)
    entries = b"".join(g.to_bytes(2, "big") + _vec(b"\x00" * n, 2) for g, n in shares)
    extensions = _ext(10, supported) + _ext(51, _vec(entries, 2))
    body = b"\x03\x03" + b"\x11" * 32 + _vec(b"\x22" * 32, 1) + _vec(b"\x13\x01", 2)
    return body + _vec(b"\x00", 1) + _vec(extensions, 2)


def server_hello(group: int, share_len: int, *, retry: bool = False) -> bytes:
    share = group.to_bytes(2, "big") + (b"" if retry else _vec(b"\x00" * share_len, 2))
    extensions = _ext(43, b"\x03\x04") + _ext(51, share)
    random = HRR_RANDOM if retry else b"\x33" * 32
    return b"\x03\x03" + random + _vec(b"\x22" * 32, 1) + b"\x13\x01\x00" + _vec(extensions, 2)


def test_parser_reads_hand_built_hellos() -> None:
    up = _handshake_record(1, client_hello([X25519MLKEM768, X25519], [(X25519MLKEM768, 1216)]))
    down = _handshake_record(2, server_hello(X25519MLKEM768, 1120))
    down += b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03" + _vec(b"\xff" * 40, 2)
    handshake = parse_handshake(up, down)
    assert handshake.client_hellos[0].supported_groups == (X25519MLKEM768, X25519)
    assert handshake.group == X25519MLKEM768 and not handshake.retried
    assert handshake.server_hellos[0].version == TLS13

    retried = parse_handshake(
        up + _handshake_record(1, client_hello([X25519], [(X25519, 32)])),
        _handshake_record(2, server_hello(X25519, 0, retry=True))
        + _handshake_record(2, server_hello(X25519, 32)),
    )
    assert retried.retried and retried.group == X25519
    assert "after a HelloRetryRequest" in retried.describe()
    # A capture cut inside a record yields what was complete, never a guess.
    assert parse_handshake(up[:-1], down[:10]).group is None
    # A ServerHello record split across two records is reassembled.
    body = server_hello(X25519MLKEM768, 1120)
    message = b"\x02" + len(body).to_bytes(3, "big") + body
    split = b"".join(b"\x16\x03\x03" + _vec(part, 2) for part in (message[:50], message[50:]))
    assert parse_handshake(b"", split).group == X25519MLKEM768


@given(
    groups=st.lists(st.integers(0, 0xFFFF), max_size=20),
    shares=st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 1300)), max_size=4),
    chosen=st.integers(0, 0xFFFF),
    share_len=st.integers(0, 1300),
)
def test_parser_round_trips_any_groups(
    groups: list[int], shares: list[tuple[int, int]], chosen: int, share_len: int
) -> None:
    parsed = parse_client_hello(client_hello(groups, shares))
    assert parsed.supported_groups == tuple(groups) and parsed.key_shares == tuple(shares)
    hello = parse_server_hello(server_hello(chosen, share_len))
    assert (hello.group, hello.share_len, hello.hello_retry) == (chosen, share_len, False)


@given(up=st.binary(max_size=300), down=st.binary(max_size=300))
def test_parser_rejects_garbage_with_a_typed_error(up: bytes, down: bytes) -> None:
    wrapped = [_handshake_record(kind, up) for kind in (1, 2)]
    for stream in (up, *wrapped):
        for pair in ((stream, down), (down, stream)):
            with contextlib.suppress(TlsParseError):  # anything else is a parser bug
                parse_handshake(*pair)


# -- the listeners, against real processes ---------------------------------------------------


@pytest.fixture
def node_taps(cluster: LocalCluster) -> Iterator[dict[int, HelloTap]]:
    taps = {node.index: HelloTap(node.address).start() for node in cluster.nodes}
    try:
        yield taps
    finally:
        for tap in taps.values():
            tap.stop()


def test_sdk_and_node_agree_on_x25519mlkem768(
    cluster: LocalCluster, node_taps: dict[int, HelloTap]
) -> None:
    manifest = cluster.manifest()
    tapped = replace(
        manifest,
        nodes=tuple(replace(n, address=node_taps[n.index].address) for n in manifest.nodes),
    )

    async def run() -> None:
        client = pakr.AsyncClient(
            tapped,
            tenant=cluster.tenant,
            token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
            deadline=5.0,
        )
        try:
            await client.register("pq-user", "pq password", b"harvest me later")
            assert await client.recover("pq-user", "pq password") == b"harvest me later"
        finally:
            await client.close()

    asyncio.run(run())
    for index, tap in node_taps.items():
        assert_hybrid(tap.handshakes(), f"SDK -> node {index}")
    for node in cluster.nodes:  # the node's own count agrees: every RPC it served was hybrid
        counts = key_exchange_counts(node.metrics_address)
        assert set(counts) == {"X25519MLKEM768"} and counts["X25519MLKEM768"] >= 2, counts


def test_coordinator_listener_negotiates_x25519mlkem768(cluster: LocalCluster) -> None:
    address = cluster.coordinator_address
    assert address is not None
    cert = cluster.coordinator_cert_path.read_bytes()
    with HelloTap(address) as tap:
        result = probe(tap.address, cert, service=COORDINATOR_SERVICE, timeout=5)
        assert result.serving, result.error
        assert_hybrid(tap.handshakes(), "CLI -> coordinator")


def test_coordinator_probes_nodes_over_x25519mlkem768(cluster: LocalCluster) -> None:
    node = cluster.manifest().nodes[0]

    async def check(address: str) -> bool:
        prober = NodeProber(None, "pakr-canary", timeout=5.0)
        try:
            health = await prober.check(replace(node, address=address))
            return bool(health.serving)
        finally:
            await prober.close()

    with HelloTap(node.address) as tap:
        assert asyncio.run(check(tap.address))
        assert_hybrid(tap.handshakes(), "coordinator -> node")


def test_metrics_listeners_are_plain_http(cluster: LocalCluster) -> None:
    """docs/security.md lists the metrics ports as plain HTTP (counters only, no TLS at all)."""
    addresses = [n.metrics_address for n in cluster.nodes] + [cluster.coordinator_metrics_address]
    assert all(addresses), addresses
    for address in addresses:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            assert response.status == 200 and b"# HELP" in response.read()


def test_tap_sees_a_classical_group_when_the_client_offers_one(cluster: LocalCluster) -> None:
    """The negative control: Python's ``ssl`` (OpenSSL < 3.5 cannot do ML-KEM) gets X25519.

    It is also the one non-gRPC handshake of the SDK: fetching a node's certificate for a
    manifest that pins only its SHA-256. No secret crosses it (the certificate is public);
    the gRPC channel that follows is hybrid, which the second half checks.
    """
    node = cluster.manifest().nodes[0]
    assert node.tls_cert_pem is not None
    sha = hashlib.sha256(ssl.PEM_cert_to_DER_cert(node.tls_cert_pem)).digest()
    classical = X25519MLKEM768 if ssl.OPENSSL_VERSION_INFO >= (3, 5) else X25519

    async def recover1(address: str) -> None:
        transport = GrpcTransport(node.ref, address, tls_cert_sha256=sha)
        try:
            await transport.recover1(UserRef(cluster.tenant, "pq-user"), "no-token", timeout=5)
        except pakr.PakrError:
            pass  # refused (bad token): the handshakes are what count here
        finally:
            await transport.close()

    with HelloTap(node.address) as tap:
        fetch_pinned_certificate(tap.address, sha, timeout=5)
        (fetch,) = [h for h in tap.handshakes() if h]
        assert fetch.group == classical, fetch.describe()
        if classical == X25519:
            assert X25519MLKEM768 not in fetch.client_hellos[0].supported_groups
    with HelloTap(node.address) as tap:
        asyncio.run(recover1(tap.address))
        fetch, *channel = [h for h in tap.handshakes() if h]  # in connection order
        assert fetch.group == classical, fetch.describe()
        assert_hybrid(channel, "SDK (hash-pinned) -> node")


def _run_node(
    address: str, ca: Path, groups: str | None = None, rpc: str | None = None
) -> dict[str, object]:
    node = shutil.which("node")
    assert node is not None
    argv = [node, str(NODE_SCRIPT), address, str(ca), groups or "-", *([rpc] if rpc else [])]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip(), out.stderr
    report: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def key_exchange_counts(metrics_address: str | None) -> dict[str, float]:
    """A node's ``pakr_node_tls_key_exchange_total`` by group, from its metrics port."""
    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^pakr_node_tls_key_exchange_total\{group="([^"]*)"\} (\S+)$', text, re.M)
    return {group: float(value) for group, value in found}


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_nodejs_tls_group_with_a_node(cluster: LocalCluster) -> None:
    """What the TypeScript SDK's transport gets: hybrid only where Node's OpenSSL is >= 3.5.

    docs/security.md states the OpenSSL 3.0 result (X25519, no ML-KEM); this keeps it true and
    switches to demanding X25519MLKEM768 as soon as the Node.js on the machine can do it.
    """
    target = cluster.node(1)
    with HelloTap(target.address) as tap:
        report = _run_node(tap.address, target.tls_cert)
        assert "error" not in report, report
        (handshake,) = [h for h in tap.handshakes() if h]
    openssl = tuple(int(p) for p in str(report["openssl"]).split(".")[:2])
    assert report["protocol"] == "TLSv1.3" and report["alpn"] == "h2"
    expected = X25519MLKEM768 if openssl >= (3, 5) else X25519
    assert handshake.group == expected, (report, handshake.describe())
    assert not handshake.retried
    if openssl >= (3, 5):
        return
    assert report["group"] == group_name(X25519)  # Node's own view agrees with the wire
    # An RPC over such a connection shows in the node's metrics under its classical group.
    before = key_exchange_counts(target.metrics_address).get("X25519", 0.0)
    called = _run_node(target.address, target.tls_cert, rpc="/pakr.v1.Node/Recover1")
    assert called.get("grpc_status", 0) != 0, called  # refused (no token), but counted
    assert key_exchange_counts(target.metrics_address).get("X25519") == before + 1
    # Asking for the hybrid group explicitly is refused by OpenSSL 3.0, not silently ignored.
    refused = _run_node(target.address, target.tls_cert, "X25519MLKEM768:X25519")
    assert "error" in refused, refused


def test_security_doc_names_tests_that_exist() -> None:
    """docs/security.md §6 cites these tests by name; a rename must update it."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    section = text.split("## 6. Post-quantum", 1)[1]
    cited = set(re.findall(r"::(test_\w+)", section))
    assert len(cited) >= 5
    for name in cited:
        assert callable(globals().get(name)), f"security.md §6 cites missing {name}"
