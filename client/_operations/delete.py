"""Delete (docs/protocol.md §5): tombstone every version of the user at a new epoch.

Register1 finds the highest epoch any node holds; Delete goes to every node with one above it,
so a node that missed the delete can never bring the secret back. Success needs
``register_threshold`` acknowledgements. A ``Conflict`` (a registration raced ahead) starts
over a bounded number of times. A user no answering node holds any version of (never
registered, or already deleted) raises ``NotRegistered``: a typo in a user id must not read
as "deleted". One node still holding a version is reason enough to delete, so a delete that
was interrupted part-way can be finished by calling it again.
"""

from __future__ import annotations

import logging

from pakr._cluster import ClusterContext
from pakr._operations.register import MAX_CONFLICT_RETRIES
from pakr._operations.states import read_states
from pakr._transport import NodeTransport
from pakr.proto.delete import delete_epoch
from pakr.proto.errors import Conflict, NotRegistered
from pakr.proto.messages import Delete, UserRef

log = logging.getLogger("pakr")


async def delete(ctx: ClusterContext, user: UserRef) -> None:
    """Replace every version of ``user`` with a tombstone on at least r nodes."""
    r = ctx.register_threshold
    for round_ in range(1, MAX_CONFLICT_RETRIES + 1):
        states = (await read_states(ctx, user, step="register1", need=r)).require(r)
        if all(s.committed is None and s.pending is None for s in states.values()):
            raise NotRegistered(
                f"no secret is registered for {user.user_id!r} (never registered, or already"
                " deleted); nothing was deleted"
            )
        tolerate = max(1, ctx.node_count - ctx.threshold)
        request = Delete(epoch=delete_epoch(states.values(), tolerate=tolerate))

        async def rpc(
            transport: NodeTransport, token: str, timeout: float, request: Delete = request
        ) -> None:
            await transport.delete(user, token, request, timeout=timeout)

        result = await ctx.step(
            "delete", user, ctx.nodes, rpc, need=r, wait_all=True, fresh_token=True
        )
        if len(result.replies) >= r:
            return
        failure = result.failure(r)
        if not isinstance(failure, Conflict) or round_ == MAX_CONFLICT_RETRIES:
            raise failure
        log.info("delete: a concurrent registration raced ahead; starting over")
