"""Every successful login heals (docs/protocol.md §4a, §4b): guess counts and missing copies.

:func:`reset_counts` sends ResetGuesses to the holders of the recovered version that do not
release a share, alongside Recover3: once, never retried (a late reset would wipe guesses
counted after the login), within the step's deadline. :func:`fill` re-registers the secret
under the same password when a node that answered holds no copy of the recovered version: a
compare-and-swap on that version (:mod:`pakr.proto.heal`), one pass, never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pakr._cluster import ClusterContext
from pakr._operations import register as registration
from pakr._operations.states import read_states
from pakr._refusals import reason
from pakr._transport import NodeTransport
from pakr.proto.choice import VersionChoice
from pakr.proto.errors import PakrError
from pakr.proto.heal import fill_wanted, newer_seen
from pakr.proto.messages import NodeRef, ResetGuesses, UserRef, UserStatus

log = logging.getLogger("pakr")


async def reset_counts(
    ctx: ClusterContext, user: UserRef, requests: Mapping[NodeRef, ResetGuesses]
) -> int:
    """ResetGuesses at each node of ``requests``, once; returns how many reset."""
    if not requests:
        return 0

    async def rpc(transport: NodeTransport, token: str, timeout: float) -> None:
        await transport.reset_guesses(user, token, requests[transport.node], timeout=timeout)

    try:
        result = await ctx.step(
            "reset", user, list(requests), rpc, need=len(requests), retry=False, wait_all=True
        )
    except PakrError as error:  # e.g. the token provider failed: the recovery still stands
        log.info("recover: no guess count was reset: %s", error)
        return 0
    for node, err in result.errors.items():
        log.info("recover: %s did not reset its guess count: %s", node.name, reason(err))
    return len(result.replies)


async def fill(
    ctx: ClusterContext,
    user: UserRef,
    password: bytes,
    secret: bytes,
    choice: VersionChoice,
    answers: Mapping[NodeRef, UserStatus],
    max_guesses: int,
) -> bool:
    """Re-register ``secret`` on every node if a node that answered lacks the recovered
    version, with its signed guess limit ``max_guesses``; abort (never retry) if anything
    newer shows up. True when a fill committed."""
    if not fill_wanted(answers, choice.version, choice.epoch):
        return False
    try:
        r = ctx.register_threshold
        states = (await read_states(ctx, user, step="register1", need=r)).require(r)
        if newer_seen(states.values(), choice.version, choice.epoch):
            log.info("recover: a newer registration exists; the copies are not filled")
            return False
        await registration.register_once(ctx, user, password, secret, max_guesses, states=states)
    except PakrError as error:
        log.info("recover: could not fill the missing copies (not retried): %s", error)
        return False
    log.info("recover: re-registered the secret on every node (missing copies filled)")
    return True
