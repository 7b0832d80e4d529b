"""Issue 12 finding 5: single-use tokens are spent only by requests that passed, and no full
structure refuses other tenants (a real node, real gRPC on loopback).

The flood test shrinks the in-memory replay cache (``MAX_REPLAY_ENTRIES``) so a bounded run
overfills it several times over; it prints its figures (``-s`` to see them): tokens sent,
rate, entries evicted, and the other tenant's results during and after the flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import grpc
import pytest
from grpc import aio

import pakr.node.auth
from pakr.proto import wire
from pakr.proto.errors import ErrorKind
from pakr.proto.messages import UserRef
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc
from tests.node.conftest import OTHER_TENANT, TENANT, RunningNode, refusal_of, start_node
from tests.node.node_helpers import make_registration
from tests.node.test_servicer import Client, registered

pytestmark = pytest.mark.timeout(300)

CACHE = 400
FLOOD = 4 * CACHE


def test_bad_input_does_not_burn_the_token(node: RunningNode) -> None:
    client, _ = registered(node, UserRef(TENANT, "retry-bad-input"))
    token = node.token(client.user)
    error = client.refused("Delete", pb.DeleteRequest(header=client.header(), epoch=0), token)
    assert refusal_of(error).kind is ErrorKind.INVALID_REQUEST
    client.call("Delete", pb.DeleteRequest(header=client.header(), epoch=5), token)  # same token
    error = client.refused("Delete", pb.DeleteRequest(header=client.header(), epoch=6), token)
    assert refusal_of(error).kind is ErrorKind.INVALID_AUTH  # now it is spent


def test_rate_limited_request_does_not_burn_the_token(tmp_path: Path) -> None:
    limited = start_node(tmp_path / "limited", rate=(1.0, 1, 0.0, 1))
    try:
        client = Client(limited, UserRef(TENANT, "retry-rate"))
        client.call("Recover1", pb.Recover1Request(header=client.header()))  # the burst of 1
        token = limited.token(client.user)
        request = pb.DeleteRequest(header=client.header(), epoch=3)
        error = client.refused("Delete", request, token)
        assert refusal_of(error).kind is ErrorKind.RATE_LIMITED
        limited.clock.offset += 1.1  # the node's clock: the bucket refills without a wait
        client.call("Delete", request, token)  # the good retry with the same token
    finally:
        limited.stop()


async def _flood(node: RunningNode, count: int) -> tuple[float, dict[str, int]]:
    """``count`` Register3 requests, each with its own valid token, 64 in flight."""
    channel = aio.secure_channel(node.address, node.credentials())
    stub = node_pb2_grpc.NodeStub(channel)
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        user = UserRef(TENANT, f"flood-{i}")
        token = node.token(user)
        request = pb.Register3Request(header=wire.header_to_pb(os.urandom(16), user))
        request.version = os.urandom(16)
        async with gate:
            try:
                await stub.Register3(
                    request, metadata=[("authorization", f"Bearer {token}")], timeout=30
                )
                key = "ok"
            except aio.AioRpcError as error:
                key = error.code().name
        outcomes[key] = outcomes.get(key, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started
    await channel.close()
    return elapsed, outcomes


def test_flooding_the_replay_cache_refuses_no_other_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pakr.node.auth, "MAX_REPLAY_ENTRIES", CACHE)
    flooded = start_node(tmp_path / "flooded")
    try:
        replays = flooded.server.servicer.auth._replays
        elapsed, outcomes = asyncio.run(_flood(flooded, FLOOD))
        assert "UNAVAILABLE" not in outcomes, outcomes
        assert len(replays) <= CACHE and replays.evicted >= FLOOD - CACHE
        # Another tenant's registration and delete, and the flooding tenant's other users,
        # still get through at once.
        good_ms: dict[str, int] = {}
        for tenant in (OTHER_TENANT, TENANT):
            started = time.perf_counter()
            client = Client(flooded, UserRef(tenant, "after-flood"))
            key = flooded.other_key if tenant == OTHER_TENANT else flooded.key
            reg = make_registration(user=client.user, node=flooded.ref)
            for method, request in (
                ("Register2", flooded.register2_pb(client.header(), reg.request)),
                ("Register3", pb.Register3Request(header=client.header(), version=reg.version)),
                ("Delete", pb.DeleteRequest(header=client.header(), epoch=2)),
            ):
                client.call(method, request, flooded.token(client.user, key=key))
            good_ms[tenant] = round((time.perf_counter() - started) * 1000)
        # A flood token forgotten by the full cache is still refused by the store.
        user = UserRef(TENANT, "replayed")
        token = flooded.token(user)
        client = Client(flooded, user)
        request = pb.Register3Request(header=client.header(), version=os.urandom(16))
        with contextlib.suppress(grpc.RpcError):
            client.call("Register3", request, token)
        for i in range(CACHE + 10):  # push it out of memory
            replays.check_and_add(f"filler-{i}", time.time() + 600, time.time())
        assert (
            refusal_of(client.refused("Register3", request, token)).kind is ErrorKind.INVALID_AUTH
        )
        print(
            f"\nflood: {FLOOD} valid single-use tokens in {elapsed:.2f} s "
            f"({FLOOD / elapsed:.0f}/s) against a {CACHE}-entry cache: outcomes {outcomes}, "
            f"{replays.evicted} evicted, 0 refused for space; with the cache full, "
            f"Register2+3+Delete by another tenant / another user of the flooding tenant "
            f"took {good_ms} ms, all accepted"
        )
    finally:
        flooded.stop()


def test_refusals_are_logged_once_per_peer_per_interval(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12 finding 6: 300 refused requests from one peer write one log line (not 300),
    and every one of them is still counted in the metrics."""
    import logging

    client = Client(node, UserRef(TENANT, "noisy"))
    metrics = node.server.servicer.metrics
    before = metrics.refusal_logs_suppressed._value.get()
    with caplog.at_level(logging.INFO, logger="pakr.node.rpc"):
        for _ in range(300):
            client.refused("Recover1", pb.Recover1Request(header=client.header()), token=False)
    lines = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert len(lines) == 1, len(lines)
    counted = metrics.requests.labels("Recover1", "invalid_auth")._value.get()
    assert counted >= 300
    assert metrics.refusal_logs_suppressed._value.get() - before == 299


def test_register2_with_a_bad_signature_does_not_burn_the_token(node: RunningNode) -> None:
    user = UserRef(TENANT, "retry-bad-signature")
    client = Client(node, user)
    reg = make_registration(user=user, node=node.ref)
    token = node.token(user)
    bad = node.register2_pb(client.header(), reg.request)
    bad.oprf_key_signature = bytes(64)
    assert refusal_of(client.refused("Register2", bad, token)).kind is ErrorKind.INVALID_REQUEST
    client.call("Register2", node.register2_pb(client.header(), reg.request), token)
