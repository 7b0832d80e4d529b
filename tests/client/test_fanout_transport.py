"""Fan-out semantics (need, linger, deadline, retries) and the gRPC error mapping."""

from __future__ import annotations

import asyncio
import os
import time

import grpc
import pytest
from grpc import aio

from pakr._fanout import NO_RETRY, InFlight, RetryPolicy, fan_out, hedged
from pakr._refusals import step_failure
from pakr._transport import refusal_from_rpc_error
from pakr.errors import NodeUnreachable
from pakr.proto import wire
from pakr.proto.errors import (
    ClusterUnavailable,
    ErrorKind,
    InvalidAuth,
    InvalidPassword,
    NodeRefusal,
    RateLimited,
)
from pakr.proto.messages import NodeRef

NODES = [NodeRef(node_id=os.urandom(16), index=i) for i in range(1, 6)]


async def test_done_once_enough_answered_plus_linger() -> None:
    delays = {1: 0.0, 2: 0.0, 3: 0.01, 4: 0.02, 5: 5.0}

    async def call(node: NodeRef, timeout: float) -> int:
        await asyncio.sleep(delays[node.index])
        return node.index

    start = time.monotonic()
    result = await fan_out("step", NODES, call, need=3, deadline=10.0, linger=0.1)
    assert time.monotonic() - start < 1.0
    assert set(result.replies) == set(NODES[:4])  # the 20 ms straggler still counted
    assert "before enough other nodes had answered" in str(result.errors[NODES[4]])


async def test_wait_all_waits_for_every_node_up_to_the_deadline() -> None:
    async def call(node: NodeRef, timeout: float) -> int:
        await asyncio.sleep(0.3 if node.index == 5 else 0.0)
        return node.index

    result = await fan_out("step", NODES, call, need=1, deadline=5.0, linger=0.0, wait_all=True)
    assert len(result.replies) == 5
    result = await fan_out("step", NODES, call, need=1, deadline=0.1, wait_all=True)
    assert len(result.replies) == 4
    assert "within the 0.1 s deadline" in str(result.errors[NODES[4]])


async def test_transient_failures_retried_within_the_deadline_others_not() -> None:
    attempts: dict[int, int] = {}

    async def call(node: NodeRef, timeout: float) -> int:
        attempts[node.index] = attempts.get(node.index, 0) + 1
        if node.index == 1 and attempts[1] < 3:
            raise NodeUnreachable("unavailable")
        if node.index == 2:
            raise NodeRefusal(ErrorKind.INVALID_AUTH, "bad token")
        if node.index == 3:
            raise NodeUnreachable("tls pin mismatch", transient=False)
        return node.index

    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)
    result = await fan_out("step", NODES, call, need=5, deadline=2.0, retry=policy)
    assert attempts == {1: 3, 2: 1, 3: 1, 4: 1, 5: 1}
    assert set(result.replies) == {NODES[0], NODES[3], NODES[4]}
    attempts.clear()
    result = await fan_out("step", NODES, call, need=5, deadline=2.0, retry=NO_RETRY)
    assert attempts[1] == 1 and NODES[0] in result.errors


async def test_short_rate_limits_are_waited_out_long_ones_and_no_retry_steps_not() -> None:
    attempts: dict[int, int] = {}

    async def call(node: NodeRef, timeout: float) -> int:
        attempts[node.index] = attempts.get(node.index, 0) + 1
        if node.index == 1 and attempts[1] == 1:
            raise NodeRefusal(ErrorKind.RATE_LIMITED, "slow down", retry_after=0.02)
        if node.index == 2:
            raise NodeRefusal(ErrorKind.RATE_LIMITED, "slow down", retry_after=30.0)
        return node.index

    policy = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)
    result = await fan_out("step", NODES, call, need=4, deadline=2.0, retry=policy)
    assert attempts == {1: 2, 2: 1, 3: 1, 4: 1, 5: 1}
    assert NODES[0] in result.replies and NODES[1] in result.errors
    attempts.clear()
    result = await fan_out("step", NODES, call, need=3, deadline=2.0, retry=NO_RETRY)
    assert attempts[1] == 1 and NODES[0] in result.errors  # Recover2/3 run with NO_RETRY


async def test_bugs_propagate_and_cancel_the_other_calls() -> None:
    cancelled = 0

    async def call(node: NodeRef, timeout: float) -> int:
        nonlocal cancelled
        if node.index == 1:
            raise KeyError("bug")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return 0

    with pytest.raises(KeyError):
        await fan_out("step", NODES, call, need=5, deadline=5.0)
    assert cancelled == 4


async def test_hedged_asks_only_what_it_needs_in_order() -> None:
    asked: list[int] = []

    async def call(node: NodeRef, timeout: float) -> int:
        asked.append(node.index)
        return node.index

    result = await hedged("recover2", NODES, call, need=3, deadline=2.0, hedge_after=1.0)
    assert asked == [1, 2, 3] and set(result.replies) == set(NODES[:3])
    assert not result.errors


async def test_hedged_replaces_failures_and_stragglers_then_cancels_the_rest() -> None:
    asked: list[int] = []
    cancelled: list[int] = []

    async def call(node: NodeRef, timeout: float) -> int:
        asked.append(node.index)
        if node.index == 1:
            raise NodeUnreachable("connection refused")
        if node.index == 2:  # stalls: the hedge brings in another node after 50 ms
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(2)
                raise
        return node.index

    start = time.monotonic()
    result = await hedged("recover2", NODES, call, need=2, deadline=5.0, hedge_after=0.05)
    assert time.monotonic() - start < 1.0
    assert asked == [1, 2, 3, 4]  # 3 replaces the failure at once, 4 is the hedge for 2
    assert set(result.replies) == {NODES[2], NODES[3]}
    assert cancelled == [2] and "before enough" in str(result.errors[NODES[1]])
    assert "connection refused" in str(result.errors[NODES[0]])


async def test_hedged_runs_out_of_candidates() -> None:
    async def call(node: NodeRef, timeout: float) -> int:
        raise NodeRefusal(ErrorKind.NO_GUESSES, "none left", guesses_remaining=0)

    result = await hedged("recover2", NODES[:3], call, need=2, deadline=2.0, hedge_after=0.05)
    assert not result.replies and set(result.errors) == set(NODES[:3])


async def test_in_flight_settles_early_and_the_others_keep_answering() -> None:
    delays = {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.1, 5: 0.1}

    async def call(node: NodeRef, timeout: float) -> int:
        await asyncio.sleep(delays[node.index])
        return node.index

    flight: InFlight[int] = InFlight("recover1", call, deadline=5.0)
    for node in NODES:
        flight.launch(node)
    start = time.monotonic()
    await flight.gather(need=3, linger=1.0, settled=lambda r: len(r.replies) >= 3)
    assert time.monotonic() - start < 0.08  # no linger once settled
    assert len(flight.result.replies) == 3 and flight.running == 2
    await asyncio.sleep(0.15)  # e.g. Argon2id
    await flight.gather(need=3, linger=0.0)
    await flight.close()
    assert len(flight.result.replies) == 5 and not flight.result.errors


async def test_a_hung_straggler_gets_its_linger_from_the_settled_moment() -> None:
    async def call(node: NodeRef, timeout: float) -> int:
        await asyncio.sleep(10.0 if node.index == 5 else 0.0)
        return node.index

    flight: InFlight[int] = InFlight("recover1", call, deadline=20.0)
    for node in NODES:
        flight.launch(node)
    await flight.gather(need=3, linger=0.05, settled=lambda r: len(r.replies) >= 3)
    await asyncio.sleep(0.2)  # Argon2id: longer than the linger
    start = time.monotonic()
    await flight.gather(need=3, linger=0.05)  # the linger already ran out: no more waiting
    assert time.monotonic() - start < 0.05
    await flight.close()
    assert "before enough other nodes" in str(flight.result.errors[NODES[4]])


def test_step_failure_picks_the_most_actionable_error() -> None:
    errors = {
        NODES[0]: NodeUnreachable("connection refused"),
        NODES[1]: NodeRefusal(ErrorKind.RATE_LIMITED, "slow down", retry_after=2.0),
        NODES[2]: NodeRefusal(ErrorKind.INVALID_AUTH, "expired"),
    }
    error = step_failure("recover1", errors, have=2, need=3)
    assert isinstance(error, InvalidAuth) and NODES[2].name in str(error)
    del errors[NODES[2]]
    error = step_failure("recover1", errors, have=2, need=3)
    assert isinstance(error, RateLimited) and error.retry_after == 2.0
    del errors[NODES[1]]
    error = step_failure("recover1", errors, have=2, need=3)
    assert isinstance(error, ClusterUnavailable)
    assert error.reasons == {NODES[0].name: "connection refused (is the node running?)"}
    assert error.details == {NODES[0].name: "connection refused"}
    assert (error.answered, error.needed) == (2, 3)
    assert str(error).startswith("cluster unavailable: 2 node(s) answered, 3 needed (")
    locked = {NODES[0]: NodeRefusal(ErrorKind.NO_GUESSES, "none left", guesses_remaining=0)}
    error = step_failure("recover2", locked, have=0, need=3)
    # One node's "no guesses" is a claim, never a lockout (issue 12 finding 2): the lockout
    # is decided by counting (lockout_is_certain), so alone it is "cannot serve".
    assert isinstance(error, ClusterUnavailable) and not isinstance(error, InvalidPassword)


def _rpc_error(code: grpc.StatusCode, trailer: bytes | None = None) -> aio.AioRpcError:
    trailing = aio.Metadata()
    if trailer is not None:
        trailing.add(wire.ERROR_METADATA_KEY, trailer)
    return aio.AioRpcError(code, aio.Metadata(), trailing, details="boom")


def test_error_detail_decides_not_the_status_code() -> None:
    detail = wire.error_detail_to_pb(
        NodeRefusal(ErrorKind.NO_GUESSES, "no guesses left", guesses_remaining=0)
    ).SerializeToString()
    error = refusal_from_rpc_error(_rpc_error(grpc.StatusCode.ABORTED, detail))
    assert isinstance(error, NodeRefusal)
    assert error.kind is ErrorKind.NO_GUESSES and error.guesses_remaining == 0


def test_status_codes_without_detail() -> None:
    unavailable = refusal_from_rpc_error(_rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert isinstance(unavailable, NodeUnreachable) and unavailable.transient
    internal = refusal_from_rpc_error(_rpc_error(grpc.StatusCode.INTERNAL))
    assert isinstance(internal, NodeUnreachable) and not internal.transient
    old = refusal_from_rpc_error(_rpc_error(grpc.StatusCode.UNIMPLEMENTED))
    assert isinstance(old, NodeRefusal) and old.kind is ErrorKind.UPGRADE_REQUIRED
    garbage = refusal_from_rpc_error(_rpc_error(grpc.StatusCode.UNAVAILABLE, b"\xff\xff"))
    assert isinstance(garbage, NodeUnreachable)
