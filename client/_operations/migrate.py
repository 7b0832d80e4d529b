"""Recovery from a previous node configuration, and migration into the current one.

A manifest may list ``previous_configurations``: node sets (with their thresholds) that users
registered on before the operator moved the cluster. When the current nodes have never heard
of a user (more than n - t of them answer with no version and no tombstone) the SDK tries
the previous configurations in the manifest's order; on success it registers the secret under
the same password on the current nodes (keeping the guess limit), so the next recovery needs
only them.

A tombstone or any version on the current nodes means the user is known there: the previous
configurations are never consulted, so a deleted secret cannot come back from an old cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pakr._cluster import ClusterContext
from pakr._operations import register as registration
from pakr._operations.recover import recover, recover_outcome
from pakr._operations.states import read_states
from pakr.proto.errors import NotRegistered, PakrError
from pakr.proto.messages import NodeRef, UserRef, UserStatus

log = logging.getLogger("pakr")


def unknown_to_cluster(ctx: ClusterContext, answers: Mapping[NodeRef, UserStatus]) -> bool:
    """Whether the current nodes show no trace of the user (so an old cluster may hold it)."""
    if any(not status.is_empty for status in answers.values()):
        return False
    return len(answers) > ctx.node_count - ctx.threshold


async def recover_or_migrate(
    ctx: ClusterContext,
    previous: Sequence[ClusterContext],
    user: UserRef,
    password: bytes,
) -> bytes:
    """Recover from the current nodes, else from a previous configuration and migrate."""
    try:
        return await recover(ctx, user, password)
    except NotRegistered as not_here:
        if not previous:
            raise
        answers = (
            await read_states(ctx, user, step="recover1", need=ctx.threshold, wait_all=True)
        ).replies
        if not unknown_to_cluster(ctx, answers):
            raise
        failure: PakrError = not_here
        for old in previous:
            try:
                recovered = await recover_outcome(old, user, password, fill=False)
            except NotRegistered:
                continue
            except PakrError as error:  # e.g. the old nodes are gone: keep looking
                failure = error
                continue
            await _migrate(ctx, user, password, recovered.secret, recovered.max_guesses)
            return recovered.secret
        raise failure from None


async def _migrate(
    ctx: ClusterContext, user: UserRef, password: bytes, secret: bytes, max_guesses: int
) -> None:
    """Register ``secret`` on the current nodes with the recovered version's own guess limit
    (``max_guesses``, from its signed policy)."""
    try:
        await registration.register(ctx, user, password, secret, max_guesses=max_guesses)
    except PakrError as error:  # the secret is recovered; migration is retried next time
        log.warning("recover: could not migrate the user to the current nodes: %s", error)
        return
    log.info("recover: migrated the user from a previous configuration")
