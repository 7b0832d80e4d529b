"""Recover (PROTOCOL.md §4): Recover1 → choose version → Argon2id → Recover2 → Recover3.

Recover2 spends a guess at every node it reaches and Recover3 consumes the attempt, so neither
is ever retried automatically: a timeout there is reported, and the user decides whether to
try again. Nodes whose replies fail verification are named in a warning (logger ``pakr``)
when enough honest nodes remain to recover anyway, and in a ``ProtocolError`` otherwise. After
a success, nodes holding the version only as pending get a Register3 to roll them forward.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pakr.cluster import ClusterContext
from pakr.passwords import stretch
from pakr.proto.errors import PakrError
from pakr.proto.messages import (
    NodeRef,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    Register3,
    UserRef,
    UserStatus,
)
from pakr.proto.recover import (
    RecoveryAttempt,
    VersionChoice,
    choose_version,
    finish_recover2,
    finish_recover3,
    start_recover2,
    verify_recover2_reply,
    verify_recover3_reply,
)
from pakr.refusals import reason, step_failure
from pakr.transport import NodeTransport

log = logging.getLogger("pakr")


async def read_states(
    ctx: ClusterContext, user: UserRef, *, wait_all: bool = False
) -> tuple[dict[NodeRef, UserStatus], dict[NodeRef, PakrError]]:
    """Recover1 at every node: the answers and the per-node failures."""

    async def rpc(transport: NodeTransport, token: str, timeout: float) -> UserStatus:
        return await transport.recover1(user, token, timeout=timeout)

    result = await ctx.step("recover1", user, ctx.nodes, rpc, need=ctx.threshold, wait_all=wait_all)
    return result.replies, result.errors


async def choose(ctx: ClusterContext, user: UserRef) -> VersionChoice:
    """Recover1 and the committed-first version choice (§4 steps 1-2)."""
    answers, errors = await read_states(ctx, user)
    if len(answers) < ctx.threshold:
        raise step_failure("recover1", errors, have=len(answers), need=ctx.threshold)
    return choose_version(
        answers,
        {node: reason(err) for node, err in errors.items()},
        threshold=ctx.threshold,
        node_count=ctx.node_count,
    )


async def recover(ctx: ClusterContext, user: UserRef, password: bytes) -> bytes:
    """Recover ``user``'s secret with ``password`` (raises ``InvalidPassword`` when wrong)."""
    t = ctx.threshold
    choice = await choose(ctx, user)
    for node in choice.suspects:
        log.warning(
            "recover: ignored %s: it reports other Argon2id parameters than the other nodes",
            node.name,
        )
    with ctx.phase("argon2"):
        access_key, seed = await stretch(password, user, choice.version, choice.argon2)
    attempt = start_recover2(user, choice, access_key, seed, ctx.rng)
    del access_key, seed
    request = attempt.request

    async def evaluate(transport: NodeTransport, token: str, timeout: float) -> Recover2Reply:
        return await transport.recover2(user, token, request, timeout=timeout)

    step2 = await ctx.step("recover2", user, choice.nodes, evaluate, need=t, retry=False)
    replies = step2.require(t)
    with ctx.phase("verify"):
        unlocked = finish_recover2(attempt, replies, threshold=t)
    _warn_invalid(attempt, replies, unlocked.requests)
    requests: Mapping[NodeRef, Recover3] = unlocked.requests

    async def release(transport: NodeTransport, token: str, timeout: float) -> Recover3Reply:
        return await transport.recover3(user, token, requests[transport.node], timeout=timeout)

    step3 = await ctx.step(
        "recover3", user, list(requests), release, need=t, retry=False, wait_all=True
    )
    shares = step3.require(t)
    with ctx.phase("decrypt"):
        secret = finish_recover3(unlocked, shares, threshold=t)
    for node, share in shares.items():
        why = verify_recover3_reply(unlocked, node, share)
        if why is not None:
            log.warning("recover: ignored %s's share: %s", node.name, why)
    if len(shares) < len(requests) or step3.errors:
        log.warning(
            "recover: %s did not release a share; recovered with the others",
            ", ".join(n.name for n in step3.errors),
        )
    await roll_forward(ctx, user, choice)
    return secret


def _warn_invalid(
    attempt: RecoveryAttempt,
    replies: Mapping[NodeRef, Recover2Reply],
    group: Mapping[NodeRef, Recover3],
) -> None:
    """Name the nodes whose evaluations were set aside although recovery went on."""
    for node, reply in replies.items():
        if node in group:
            continue
        why = verify_recover2_reply(attempt, node, reply) or "inconsistent with the other nodes"
        log.warning("recover: ignored %s's evaluation: %s", node.name, why)


async def roll_forward(ctx: ClusterContext, user: UserRef, choice: VersionChoice) -> None:
    """Commit the recovered version on nodes holding it only as pending (best effort)."""
    if not choice.pending_nodes:
        return
    request = Register3(version=choice.version)

    async def rpc(transport: NodeTransport, token: str, timeout: float) -> None:
        await transport.register3(user, token, request, timeout=timeout)

    result = await ctx.step(
        "roll-forward",
        user,
        choice.pending_nodes,
        rpc,
        need=len(choice.pending_nodes),
        wait_all=True,
        fresh_token=True,
    )
    for node, err in result.errors.items():
        log.warning("recover: could not roll %s forward: %s", node.name, reason(err))
