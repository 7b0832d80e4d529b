"""Property 5 (docs/protocol.md §8): a malicious node can make recovery fail — detected and named —
but never make the client accept a wrong secret, roll it back to a replaced version, weaken
Argon2, replay the client's token to another node, or learn the password.

A 3-of-5 local cluster of real node processes; node 5 is stopped and replaced by
:class:`~sec_malicious_node.MaliciousNode`, which owns node 5's address, id, index and TLS key
(a compromised machine) and speaks the real gRPC API. Each test registers through it while it
is honest, then switches it to one misbehaviour. "Minority" runs use all five nodes (four
honest: recovery must succeed with the right secret); "deciding" runs make two honest nodes
unreachable from the client, so the malicious node's answer is needed (three of three): the
recovery must then fail, name node 5, and still never return a wrong secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pakr
from pakr._transport import NodeTransport
from pakr.coordinator.localcluster import LocalCluster
from pakr.errors import NodeUnreachable
from pakr.node.config import HpkeKeyFiles
from pakr.node.hpke_keys import load_private_key
from pakr.proto import kdf
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.kdf import Argon2Params
from pakr.proto.manifest import Manifest, ManifestNode
from pakr.proto.messages import UserRef
from pakr.proto.tokens import TenantKey, verify_token
from tests.security.sec_malicious_node import MaliciousNode

pytestmark = pytest.mark.timeout(180)

SECRET = bytes(range(48))
EVIL = 5
DEADLINE = 2.0


@pytest.fixture(scope="module")
def evil(cluster: LocalCluster) -> Iterator[MaliciousNode]:
    node = cluster.node(EVIL)
    ref = next(n.ref for n in cluster.manifest().nodes if n.index == EVIL)
    cluster.kill_node(EVIL)
    fake = MaliciousNode(
        ref,
        node.address,
        node.tls_cert.read_bytes(),
        (node.tls_cert.parent / "node.key").read_bytes(),
        load_private_key(HpkeKeyFiles(node.dir / "hpke.key", node.dir / "hpke.pub")),
    )
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def mode(evil: MaliciousNode) -> Iterator[MaliciousNode]:
    evil.mode = "honest"
    try:
        yield evil
    finally:
        evil.mode = "honest"


class _Unreachable:
    """A transport for a node the client cannot reach (the node itself keeps running)."""

    def __init__(self, node: ManifestNode) -> None:
        self.node = node.ref

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise NodeUnreachable("unreachable (test)")

        return fail

    async def close(self) -> None:
        return None


def client(cluster: LocalCluster, *, cut: tuple[int, ...] = ()) -> pakr.Client:
    def factory(node: ManifestNode, manifest: Manifest) -> NodeTransport:
        if node.index in cut:
            return _Unreachable(node)  # type: ignore[return-value]
        return pakr.grpc_transport(node, manifest)

    return pakr.Client.from_manifest(
        cluster.manifest_path,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
        deadline=DEADLINE,
        transport_factory=factory,
    )


def evil_name(cluster: LocalCluster) -> str:
    return next(n.ref.name for n in cluster.manifest().nodes if n.index == EVIL)


def register(cluster: LocalCluster, user: str, password: str = "pw") -> None:
    with client(cluster) as c:
        c.register(user, password, SECRET)


DETECTED = ["bad_evaluation", "wrong_key", "bad_share"]


@pytest.mark.parametrize("misbehaviour", DETECTED)
def test_forgery_is_outvoted_and_named(
    cluster: LocalCluster,
    mode: MaliciousNode,
    misbehaviour: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = f"forged-{misbehaviour}"
    register(cluster, user)
    mode.mode = misbehaviour
    with client(cluster) as c, caplog.at_level(logging.WARNING, logger="pakr"):
        assert c.recover(user, "pw") == SECRET
    assert evil_name(cluster) in caplog.text


@pytest.mark.parametrize("misbehaviour", DETECTED)
def test_forgery_in_a_deciding_position_fails_named_never_wrong(
    cluster: LocalCluster, mode: MaliciousNode, misbehaviour: str
) -> None:
    user = f"deciding-{misbehaviour}"
    register(cluster, user)
    mode.mode = misbehaviour
    with client(cluster, cut=(1, 2)) as c, pytest.raises(pakr.ProtocolError) as info:
        c.recover(user, "pw")
    assert info.value.nodes == [evil_name(cluster)]
    mode.mode = "honest"  # the failed attempt did not lock anything: honest again, it works
    with client(cluster, cut=(1, 2)) as c:
        assert c.recover(user, "pw") == SECRET


@pytest.mark.parametrize("misbehaviour", ["huge", "stall"])
def test_oversized_or_stalled_reply_costs_at_most_the_deadline(
    cluster: LocalCluster, mode: MaliciousNode, misbehaviour: str
) -> None:
    user = f"dos-{misbehaviour}"
    register(cluster, user)
    mode.mode = misbehaviour
    with client(cluster) as c:
        started = time.monotonic()
        assert c.recover(user, "pw") == SECRET
        assert time.monotonic() - started < 3 * DEADLINE
    with client(cluster, cut=(1, 2)) as c, pytest.raises(pakr.ClusterUnavailable) as info:
        c.recover(user, "pw")
    assert evil_name(cluster) in str(info.value)


@pytest.mark.parametrize("misbehaviour", ["weak_argon2", "slow_argon2"])
def test_argon2_parameters_cannot_be_weakened_or_inflated(
    cluster: LocalCluster,
    mode: MaliciousNode,
    misbehaviour: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = f"params-{misbehaviour}"
    register(cluster, user)
    used: list[Argon2Params] = []
    real = kdf.argon2id

    def spy(password: bytes, salt: bytes, params: Argon2Params, length: int = 64) -> bytes:
        used.append(params)
        return real(password, salt, params, length)

    monkeypatch.setattr(kdf, "argon2id", spy)
    mode.mode = misbehaviour
    with client(cluster) as c:
        assert c.recover(user, "pw") == SECRET
    assert used == [cluster.argon2]  # the honest majority's parameters, once
    used.clear()
    with client(cluster, cut=(1, 2)) as c, pytest.raises(pakr.PakrError) as info:
        c.recover(user, "pw")
    assert isinstance(info.value, pakr.ProtocolError | pakr.WeakParameters)
    assert used == []  # refused before any Argon2id run, so no guess was spent either


def test_replaced_version_cannot_be_rolled_back(cluster: LocalCluster, mode: MaliciousNode) -> None:
    user = "rollback"
    with client(cluster) as c:
        c.register(user, "old", b"old secret")
        c.register(user, "new", SECRET, if_exists="replace")  # new secret and password
    mode.mode = "rollback"  # node 5 presents the replaced version as its committed one
    with client(cluster) as c:
        assert c.recover(user, "new") == SECRET
        with pytest.raises(pakr.InvalidPassword):
            c.recover(user, "old")
    # Even in a deciding position a lone node cannot bring the old version back: it is held
    # by one node of the three reachable, so no version qualifies and nothing is spent.
    with client(cluster, cut=(1, 2)) as c, pytest.raises(pakr.ClusterUnavailable):
        c.recover(user, "old")


def test_replaced_registration_cannot_be_replayed_into_a_recovery(
    cluster: LocalCluster, mode: MaliciousNode, caplog: pytest.LogCaptureFixture
) -> None:
    """Node 5 answers Recover2 with the replaced version's key share, its genuinely signed
    public share and commitment: the signature binds version and epoch, so it is caught."""
    user = "stale-key"
    with client(cluster) as c:
        c.register(user, "pw", b"old secret")
        c.register(user, "pw", SECRET, if_exists="replace")  # same password, new version
    mode.mode = "stale_key"
    with client(cluster) as c, caplog.at_level(logging.WARNING, logger="pakr"):
        assert c.recover(user, "pw") == SECRET
    assert evil_name(cluster) in caplog.text
    with client(cluster, cut=(1, 2)) as c, pytest.raises(pakr.ProtocolError) as info:
        c.recover(user, "pw")
    assert info.value.nodes == [evil_name(cluster)]


def test_captured_token_is_useless_at_any_other_node(
    cluster: LocalCluster, mode: MaliciousNode
) -> None:
    user = "token-thief"
    register(cluster, user)
    mode.tokens.clear()
    with client(cluster) as c:
        assert c.recover(user, "pw") == SECRET
    assert mode.tokens, "the malicious node received no token"
    key = TenantKey.load(cluster.tenant_key_path)
    evil_id = next(n.node_id.hex() for n in cluster.manifest().nodes if n.index == EVIL)
    for token in mode.tokens:  # each was minted for node 5 only
        claims = verify_token(
            token, keys={key.kid: key.public_key}, audience=evil_id, now=time.time()
        )
        assert claims.audience == evil_id
    manifest = cluster.manifest()
    ref = UserRef(cluster.tenant, user)
    import asyncio

    async def replay() -> list[NodeRefusal]:
        refusals = []
        for node in manifest.nodes:
            if node.index == EVIL:
                continue
            transport = pakr.grpc_transport(node, manifest)
            try:
                for token in mode.tokens[:3]:
                    with pytest.raises(NodeRefusal) as info:
                        await transport.recover1(ref, token, timeout=DEADLINE)
                    refusals.append(info.value)
            finally:
                await transport.close()
        return refusals

    refusals = asyncio.run(replay())
    assert refusals and all(r.kind is ErrorKind.INVALID_AUTH for r in refusals)
