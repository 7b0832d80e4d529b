"""Guess accounting over gRPC: concurrency, retries, replays, lockout and data at rest."""

from __future__ import annotations

import asyncio
import os
import sqlite3

import grpc
import pytest

from pakr.proto import kdf, wire
from pakr.proto.errors import ErrorKind
from pakr.proto.messages import LOCKOUT_GRACE_SECONDS
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc
from tests.node.conftest import RunningNode, refusal_of
from tests.node.node_helpers import ANY_REPLY_KEY, USER, attempt, make_registration, unlock
from tests.node.test_servicer import Client, registered


def remaining(client: Client) -> int:
    return int(client.status().committed.guesses_remaining)


async def test_200_concurrent_wrong_attempts_spend_exactly_max(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=10)
    channel = grpc.aio.secure_channel(node.address, node.credentials())
    stub = node_pb2_grpc.NodeStub(channel)

    def md() -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {node.token(USER)}")]

    async def one() -> tuple[str, str | None]:
        att = attempt(reg, right=False)
        try:
            await stub.Recover2(
                wire.recover2_to_pb(client.header(), att.request), metadata=md(), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            return refusal_of(exc).kind.name, None
        request = pb.Recover3Request(
            header=client.header(),
            version=reg.version,
            attempt_id=att.attempt_id,
            unlock_proof=os.urandom(32),
            reply_key=ANY_REPLY_KEY,
        )
        try:
            await stub.Recover3(request, metadata=md(), timeout=30)
        except grpc.aio.AioRpcError as exc:
            return "counted", refusal_of(exc).kind.name
        return "counted", "RELEASED"

    try:
        outcomes = await asyncio.gather(*(one() for _ in range(200)))
    finally:
        await channel.close()
    first = [o[0] for o in outcomes]
    second = [o[1] for o in outcomes if o[1] is not None]
    assert first.count("counted") == 10
    assert set(first) <= {"counted", "NO_GUESSES", "LOCKED"}
    assert "RELEASED" not in second
    assert second.count("BAD_UNLOCK_TAG") >= 1  # the latest attempt's proof was checked
    status = client.status()
    assert status.committed.locked and status.committed.guesses_remaining == 0
    error = client.refused("Recover2", wire.recover2_to_pb(client.header(), attempt(reg).request))
    assert refusal_of(error).kind in (ErrorKind.LOCKED, ErrorKind.NO_GUESSES)
    conn = sqlite3.connect(node.db)
    try:
        rows = conn.execute(
            "SELECT guess_count, sealed_oprf_key_share, sealed_secret_share, sealed_unlock_tag,"
            " encrypted_secret FROM versions"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [(10, None, None, None, None)]


def test_new_pending_version_does_not_reset(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=5)
    for _ in range(3):
        client.wrong_guess(reg)
    newer = make_registration(node=node.ref, epoch=2, expected=reg.version)
    client.register(newer, commit=False)
    status = client.status()
    assert status.committed.version == reg.version
    assert status.committed.guesses_remaining == 2
    assert status.pending.guesses_remaining == 10


def test_replayed_register3_does_not_reset(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=5)
    for _ in range(2):
        client.wrong_guess(reg)
    client.call("Register3", pb.Register3Request(header=client.header(), version=reg.version))
    assert remaining(client) == 3
    # re-sending the identical Register2 (a "retry") is a no-op too
    client.call("Register2", node.register2_pb(client.header(), reg.request))
    assert remaining(client) == 3


def test_replayed_and_unprompted_recover3_get_nothing(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=5)
    att = attempt(reg)
    reply = client.call("Recover2", wire.recover2_to_pb(client.header(), att.request))
    unlocked = unlock(att, wire.recover2_reply_from_pb(reply))
    good = wire.recover3_to_pb(client.header(), unlocked.requests[reg.node])
    client.call("Recover3", good)
    for _ in range(2):
        client.wrong_guess(reg)
    assert remaining(client) == 3
    before = node.dump()
    replayed = client.refused("Recover3", good)
    assert refusal_of(replayed).kind is ErrorKind.STALE_ATTEMPT
    unprompted = pb.Recover3Request(
        header=client.header(),
        version=reg.version,
        attempt_id=os.urandom(16),
        unlock_proof=os.urandom(32),
        reply_key=ANY_REPLY_KEY,
    )
    assert refusal_of(client.refused("Recover3", unprompted)).kind is ErrorKind.STALE_ATTEMPT
    assert remaining(client) == 3
    assert node.dump() == before


def test_retried_recover2_costs_one_guess(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=5)
    att = attempt(reg)
    request = wire.recover2_to_pb(client.header(), att.request)
    first = client.call("Recover2", request)
    second = client.call("Recover2", request)
    assert remaining(client) == 4
    assert first.nonce == second.nonce
    assert first.evaluated_element == second.evaluated_element
    # and the retried reply still unlocks
    unlocked = unlock(att, wire.recover2_reply_from_pb(second))
    client.call("Recover3", wire.recover3_to_pb(client.header(), unlocked.requests[reg.node]))
    assert remaining(client) == 5


def test_last_guess_lapses_into_lockout_after_grace(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=1)
    client.wrong_guess(reg)
    assert not client.status().committed.locked
    node.clock.offset = LOCKOUT_GRACE_SECONDS + 1
    status = client.status()
    assert status.committed.locked and status.committed.guesses_remaining == 0
    error = client.refused("Recover2", wire.recover2_to_pb(client.header(), attempt(reg).request))
    assert refusal_of(error).kind is ErrorKind.LOCKED
    audit = client.call("ReadAudit", pb.ReadAuditRequest(header=client.header(), limit=100))
    assert [e.op for e in audit.entries][-1] == "locked"


def test_database_holds_no_secret_password_or_share(node: RunningNode) -> None:
    password = b"correct horse battery staple"
    secret = os.urandom(32)
    client = Client(node)
    reg = make_registration(node=node.ref, password=password, secret=secret)
    client.register(reg)
    assert client.recover(reg) == secret
    client.wrong_guess(reg)
    access_key, _ = kdf.stretch_password(
        password, USER.tenant, USER.user_id, reg.version, reg.request.argon2
    )
    forbidden = {
        "secret": secret,
        "password": password,
        "access_key": access_key,
        "k_i": reg.request.oprf_key_share.encoded,
        "s_i": reg.request.secret_share.encoded,
        "unlock_tag": reg.request.unlock_tag,
    }
    files = [p for p in node.db.parent.iterdir() if p.name.startswith("node.db")]
    assert any(p.name.endswith("-wal") for p in files)
    blob = b"".join(p.read_bytes() for p in files)
    assert reg.request.encrypted_secret in blob  # sanity: the data is really there
    for name, value in forbidden.items():
        assert value not in blob, f"{name} found in the database files"


@pytest.mark.parametrize("max_guesses", [1, 3])
def test_last_allowed_guess_still_recovers(node: RunningNode, max_guesses: int) -> None:
    client, reg = registered(node, max_guesses=max_guesses)
    for _ in range(max_guesses - 1):
        client.wrong_guess(reg)
    assert client.recover(reg) == reg.secret
    assert remaining(client) == max_guesses


def test_single_use_token_stays_used_when_the_node_forgets(node: RunningNode) -> None:
    """A Register3 token replayed after the node lost its in-memory caches (a restart, or
    another replica on the same database) is still refused: the use is in the store."""
    from pakr.node.auth import ReplayCache, VerifiedTokens

    client, reg = registered(node, max_guesses=5)
    token = node.token(USER)
    request = pb.Register3Request(header=client.header(), version=reg.version)
    client.call("Register3", request, token)
    auth = node.server.servicer.auth
    auth._replays = ReplayCache()  # what a restart loses
    auth._verified = VerifiedTokens()
    error = client.refused("Register3", request, token)
    assert refusal_of(error).kind is ErrorKind.INVALID_AUTH
    assert "already used" in str(refusal_of(error))
    client.call("Register3", request)  # a fresh token for the same no-op commit is fine
