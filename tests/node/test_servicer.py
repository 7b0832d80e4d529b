"""The Node servicer over a real TLS grpc.aio server on 127.0.0.1.

Happy paths are driven with the pure client steps of ``pakr.proto``; every refusal must be a
typed ErrorDetail and leave the data tables byte-identical (the audit log records only
authenticated outcomes and is excluded from the comparison).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from pakr.proto import wire
from pakr.proto.errors import ErrorKind
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import UserRef
from pakr.proto.recover import finish_recover3
from pakr.proto.v1 import node_pb2 as pb
from tests.node.conftest import RunningNode, refusal_of
from tests.node.node_helpers import (
    ANY_REPLY_KEY,
    OTHER_USER,
    USER,
    Registration,
    attempt,
    make_registration,
    unlock,
)


@dataclass
class Client:
    node: RunningNode
    user: UserRef = USER

    def __post_init__(self) -> None:
        self.stub = self.node.stub()

    def header(self, user: UserRef | None = None) -> pb.RequestHeader:
        return wire.header_to_pb(os.urandom(16), user or self.user)

    def call(self, method: str, request: Any, token: str | bool | None = True) -> Any:
        if token is True:
            scope = "audit" if method == "ReadAudit" else "user"
            token = self.node.token(self.user, scope=scope)
        metadata = [("authorization", f"Bearer {token}")] if token else []
        return getattr(self.stub, method)(request, metadata=metadata, timeout=10)

    def refused(self, method: str, request: Any, token: str | bool | None = True) -> Any:
        with pytest.raises(grpc.RpcError) as info:
            self.call(method, request, token)
        return info.value

    # -- protocol steps

    def register(self, reg: Registration, commit: bool = True) -> None:
        self.call("Register2", self.node.register2_pb(self.header(reg.user), reg.request))
        if commit:
            self.call("Register3", pb.Register3Request(header=self.header(), version=reg.version))

    def status(self) -> pb.UserStatus:
        return self.call("Recover1", pb.Recover1Request(header=self.header())).status

    def recover(self, reg: Registration) -> bytes:
        att = attempt(reg)
        reply = self.call("Recover2", wire.recover2_to_pb(self.header(), att.request))
        unlocked = unlock(att, wire.recover2_reply_from_pb(reply))
        req = unlocked.requests[reg.node]
        share = self.call("Recover3", wire.recover3_to_pb(self.header(), req))
        opened = wire.recover3_reply_from_pb(
            share, user=self.user, node_id=reg.node.node_id, request=req
        )
        return finish_recover3(unlocked, {reg.node: opened}, threshold=1)

    def wrong_guess(self, reg: Registration) -> pb.Recover2Response:
        att = attempt(reg, right=False)
        return self.call("Recover2", wire.recover2_to_pb(self.header(), att.request))


def registered(
    node: RunningNode, user: UserRef = USER, **kwargs: Any
) -> tuple[Client, Registration]:
    client = Client(node, user)
    reg = make_registration(user=user, node=node.ref, **kwargs)
    client.register(reg)
    return client, reg


# ---------------------------------------------------------------------------- happy paths


def test_every_rpc_happy_path(node: RunningNode) -> None:
    client = Client(node)
    empty = client.call("Register1", pb.Register1Request(header=client.header())).status
    assert not empty.HasField("committed") and empty.tombstone_epoch == 0
    reg = make_registration(node=node.ref, secret=b"s" * 32)
    client.register(reg, commit=False)
    pending = client.status()
    assert pending.pending.version == reg.version and not pending.HasField("committed")
    client.call("Register3", pb.Register3Request(header=client.header(), version=reg.version))
    status = client.status()
    assert status.committed.version == reg.version and status.committed.guesses_remaining == 10
    assert client.recover(reg) == b"s" * 32
    client.call("Delete", pb.DeleteRequest(header=client.header(), epoch=2))
    assert client.status().tombstone_epoch == 2
    audit = client.call(
        "ReadAudit", pb.ReadAuditRequest(header=client.header(), after_id=0, limit=100)
    )
    ops = [(e.op, e.outcome) for e in audit.entries]
    assert ops == [
        ("registered", "pending"),
        ("registered", "committed"),
        ("guess_used", "remaining=9"),
        ("share_released", "ok"),
        ("deleted", "epoch=2"),
    ]
    assert all(e.peer.startswith("ipv4:127.0.0.1") for e in audit.entries)
    # the whole tenant with an empty user id in the header
    tenant_client = Client(node, UserRef(USER.tenant, ""))
    token = node.token(UserRef(USER.tenant, "auditor"), scope="audit")
    rows = tenant_client.call(
        "ReadAudit",
        pb.ReadAuditRequest(header=tenant_client.header(), after_id=0, limit=2),
        token,
    )
    assert len(rows.entries) == 2


def test_wrong_password_reports_guesses(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=3)
    reply = client.wrong_guess(reg)
    assert reply.guesses_remaining == 2
    assert client.status().committed.guesses_remaining == 2
    assert client.recover(reg) == reg.secret
    assert client.status().committed.guesses_remaining == 3


def test_recovery_with_the_crypto_thread(tmp_path: Any) -> None:
    from tests.node.conftest import start_node

    threaded = start_node(tmp_path / "threaded", crypto_thread=True)
    try:
        assert threaded.config.crypto_thread
        client, reg = registered(threaded)
        client.wrong_guess(reg)
        assert client.recover(reg) == reg.secret
    finally:
        threaded.stop()


def test_health_service(node: RunningNode) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.secure_channel(node.address, node.credentials())
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "pakr.v1.Node"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()


# ---------------------------------------------------------------------------- auth


@dataclass
class Scenario:
    """A user with a committed version, a pending one and an open attempt: every request
    below would change the data tables if its token were good."""

    client: Client
    requests: dict[str, Any]


def scenario(node: RunningNode, user: UserRef) -> Scenario:
    client, reg = registered(node, user)
    newer = make_registration(user=user, node=node.ref, epoch=2, expected=reg.version)
    client.register(newer, commit=False)
    open_attempt = attempt(reg, right=False)
    client.call("Recover2", wire.recover2_to_pb(client.header(), open_attempt.request))
    third = make_registration(user=user, node=node.ref, epoch=3, expected=reg.version)
    requests = {
        "Register1": pb.Register1Request(header=client.header()),
        "Register2": node.register2_pb(client.header(), third.request),
        "Register3": pb.Register3Request(header=client.header(), version=newer.version),
        "Recover1": pb.Recover1Request(header=client.header()),
        "Recover2": wire.recover2_to_pb(client.header(), attempt(reg, right=False).request),
        "Recover3": pb.Recover3Request(
            header=client.header(),
            version=reg.version,
            attempt_id=open_attempt.attempt_id,
            unlock_proof=os.urandom(32),
            reply_key=ANY_REPLY_KEY,
        ),
        "Delete": pb.DeleteRequest(header=client.header(), epoch=10),
        "ReadAudit": pb.ReadAuditRequest(header=client.header(), after_id=0, limit=10),
    }
    return Scenario(client, requests)


MUTATING = ("Register2", "Register3", "Recover2", "Recover3", "Delete")
ALL_RPCS = ("Register1", "Recover1", "ReadAudit", *MUTATING)


@pytest.mark.parametrize("method", MUTATING)
def test_good_token_changes_the_tables(node: RunningNode, method: str) -> None:
    """The control for the auth tests: the same requests with a valid token do change state."""
    scene = scenario(node, USER)
    before = node.dump()
    try:
        scene.client.call(method, scene.requests[method])
    except grpc.RpcError as exc:  # Recover3 with a wrong proof is refused but still counts
        assert refusal_of(exc).kind is ErrorKind.BAD_UNLOCK_TAG
    assert node.dump() != before


BAD_TOKENS: dict[str, Callable[[RunningNode, UserRef, str], str | None]] = {
    "missing": lambda n, u, s: None,
    "garbage": lambda n, u, s: "not-a-jwt",
    "expired": lambda n, u, s: n.token(u, scope=s, now=n.clock() - 1000),
    "other_user": lambda n, u, s: n.token(OTHER_USER, scope=s),
    "other_tenant": lambda n, u, s: n.token(u, scope=s, key=n.other_key),
    "other_node": lambda n, u, s: n.token(u, scope=s, audience=os.urandom(16).hex()),
    "wrong_scope": lambda n, u, s: n.token(u, scope="user" if s == "audit" else "audit"),
}


@pytest.mark.parametrize("method", ALL_RPCS)
@pytest.mark.parametrize("bad", sorted(BAD_TOKENS))
def test_bad_tokens_are_refused_and_change_nothing(
    shared_node: RunningNode, method: str, bad: str
) -> None:
    user = UserRef(USER.tenant, f"auth-{method}-{bad}")
    scene = scenario(shared_node, user)
    before = shared_node.dump()
    scope = "audit" if method == "ReadAudit" else "user"
    token = BAD_TOKENS[bad](shared_node, user, scope)
    error = scene.client.refused(method, scene.requests[method], token or False)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    detail = refusal_of(error)
    assert detail.kind is ErrorKind.INVALID_AUTH
    if token:
        assert token not in str(detail) and token not in (error.details() or "")
    assert shared_node.dump() == before


@pytest.mark.parametrize("method", ["Register2", "Register3", "Delete"])
def test_state_changing_tokens_are_single_use(node: RunningNode, method: str) -> None:
    scene = scenario(node, USER)
    token = node.token(USER)
    scene.client.call(method, scene.requests[method], token)
    before = node.dump()
    error = scene.client.refused(method, scene.requests[method], token)
    assert refusal_of(error).kind is ErrorKind.INVALID_AUTH
    assert node.dump() == before


def test_delete_needs_a_fresh_token(node: RunningNode) -> None:
    client, _ = registered(node)
    old = node.token(USER, now=node.clock() - 400, ttl=3600)
    before = node.dump()
    error = client.refused("Delete", pb.DeleteRequest(header=client.header(), epoch=5), old)
    assert refusal_of(error).kind is ErrorKind.INVALID_AUTH
    assert node.dump() == before


# ---------------------------------------------------------------------------- bad input


def test_unknown_protocol_version_is_upgrade_required(node: RunningNode) -> None:
    client, reg = registered(node)
    for version in (1, 3):  # protocol 1 (shares in the clear) is refused like a future one
        header = client.header()
        header.protocol_version = version
        for method, request in (
            ("Recover1", pb.Recover1Request(header=header)),
            ("Recover2", wire.recover2_to_pb(header, attempt(reg).request)),
        ):
            error = client.refused(method, request)
            assert error.code() is grpc.StatusCode.UNIMPLEMENTED
            assert refusal_of(error).kind is ErrorKind.UPGRADE_REQUIRED


def test_unknown_user_and_version(node: RunningNode) -> None:
    client, reg = registered(node)
    other = make_registration(node=node.ref)
    before = node.dump()
    for method, request, kind in (
        ("Recover2", wire.recover2_to_pb(client.header(), attempt(other).request), "NOT"),
        (
            "Recover3",
            pb.Recover3Request(
                header=client.header(),
                version=other.version,
                attempt_id=os.urandom(16),
                unlock_proof=os.urandom(32),
                reply_key=ANY_REPLY_KEY,
            ),
            "NOT",
        ),
        ("Register3", pb.Register3Request(header=client.header(), version=other.version), "C"),
    ):
        error = client.refused(method, request)
        expected = ErrorKind.NOT_REGISTERED if kind == "NOT" else ErrorKind.CONFLICT
        assert refusal_of(error).kind is expected
    stranger = Client(node, UserRef(USER.tenant, "nobody"))
    error = stranger.refused(
        "Recover2", wire.recover2_to_pb(stranger.header(), attempt(reg).request)
    )
    assert refusal_of(error).kind is ErrorKind.NOT_REGISTERED
    assert node.dump() == before


@pytest.mark.parametrize("method", ALL_RPCS)
def test_oversized_message_is_refused(shared_node: RunningNode, method: str) -> None:
    scene = scenario(shared_node, UserRef(USER.tenant, f"oversized-{method}"))
    request = type(scene.requests[method])()
    request.CopyFrom(scene.requests[method])
    request.header.request_id = bytes(70_000)
    before = shared_node.dump()
    error = scene.client.refused(method, request)
    # gRPC itself refuses messages over 64 KiB before the servicer runs (no detail trailer)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert shared_node.dump() == before


def test_identity_and_noncanonical_encodings(node: RunningNode) -> None:
    client, reg = registered(node)
    before = node.dump()
    att = attempt(reg)
    identity = wire.recover2_to_pb(client.header(), att.request)
    identity.blinded_element = bytes(32)
    error = client.refused("Recover2", identity)
    assert refusal_of(error).kind is ErrorKind.INVALID_REQUEST
    newer = make_registration(node=node.ref, epoch=2, expected=reg.version)
    tampered = node.register2_pb(client.header(), newer.request)
    sealed = bytearray(tampered.sealed_shares)
    sealed[-1] ^= 1
    tampered.sealed_shares = bytes(sealed)
    error = client.refused("Register2", tampered)
    assert refusal_of(error).kind is ErrorKind.INVALID_REQUEST
    assert "does not decrypt" in str(refusal_of(error))
    # Sealed to another key (or replayed for another user/version): does not open either.
    other_key = HpkePrivateKey.from_seed(os.urandom(32)).public
    elsewhere = wire.register2_to_pb(
        client.header(), newer.request, node_id=node.config.node_id, node_key=other_key
    )
    error = client.refused("Register2", elsewhere)
    assert refusal_of(error).kind is ErrorKind.INVALID_REQUEST
    moved = node.register2_pb(client.header(), newer.request)
    moved.epoch = 3  # the info binds the epoch (and user, node, version)
    error = client.refused("Register2", moved)
    assert refusal_of(error).kind is ErrorKind.INVALID_REQUEST
    assert node.dump() == before


@pytest.mark.parametrize(
    "params",
    [
        Argon2Params(memory_kib=8192, iterations=2, parallelism=1),  # below the floor
        Argon2Params(memory_kib=19456, iterations=1, parallelism=1),
        Argon2Params(memory_kib=2 * 1048576, iterations=2, parallelism=1),  # above the ceiling
        Argon2Params(memory_kib=65536, iterations=65, parallelism=1),
    ],
)
def test_register2_outside_the_argon2_bounds_is_refused(
    shared_node: RunningNode, params: Argon2Params
) -> None:
    """A registration the SDK could never recover (WeakParameters) is not stored."""
    user = UserRef(USER.tenant, f"argon-{params.memory_kib}-{params.iterations}")
    client = Client(shared_node, user)
    reg = make_registration(user=user, node=shared_node.ref, argon2=params)
    before = shared_node.dump()
    error = client.refused("Register2", shared_node.register2_pb(client.header(), reg.request))
    refusal = refusal_of(error)
    assert refusal.kind is ErrorKind.INVALID_REQUEST and "argon2" in str(refusal)
    assert shared_node.dump() == before


def test_rate_limit_per_user(tmp_path: Any) -> None:
    from tests.node.conftest import start_node

    limited = start_node(tmp_path / "limited", rate=(1.0, 2, 0.0, 1))
    try:
        client = Client(limited)
        for _ in range(2):
            client.call("Recover1", pb.Recover1Request(header=client.header()))
        error = client.refused("Recover1", pb.Recover1Request(header=client.header()))
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        detail = refusal_of(error)
        assert detail.kind is ErrorKind.RATE_LIMITED
        assert detail.retry_after is not None and 0 < detail.retry_after <= 1.0
        # another user still gets through: the limit is per user
        other = Client(limited, OTHER_USER)
        other.call("Recover1", pb.Recover1Request(header=other.header()))
    finally:
        limited.stop()


def test_rate_limit_per_peer(tmp_path: Any) -> None:
    from tests.node.conftest import start_node

    limited = start_node(tmp_path / "limited", rate=(0.0, 1, 1.0, 3))
    try:
        client = Client(limited)
        for _ in range(3):
            client.call("Recover1", pb.Recover1Request(header=client.header()))
        error = client.refused("Recover1", pb.Recover1Request(header=client.header()), False)
        assert refusal_of(error).kind is ErrorKind.RATE_LIMITED  # even before the token check
    finally:
        limited.stop()
