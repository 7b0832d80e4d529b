"""Each node's view of a user: the first round of every operation, written once.

Register1 and Recover1 return the same :class:`~pakr.proto.messages.UserStatus` (Recover1
adds the node's reset nonce, which only recovery uses). Registration, delete and the fill of
missing copies read with Register1; recovery, status and the migration probe with Recover1,
so a status check is answered exactly as a recovery's first step would be.
"""

from __future__ import annotations

from typing import Literal

from pakr._cluster import ClusterContext, NodeStep
from pakr._fanout import StepResult
from pakr._transport import NodeTransport
from pakr.proto.messages import UserRef, UserStatus

StateStep = Literal["register1", "recover1"]


def state_rpc(step: StateStep, user: UserRef) -> NodeStep[UserStatus]:
    """The Register1 or Recover1 RPC for ``user`` at one node."""

    async def register1(transport: NodeTransport, token: str, timeout: float) -> UserStatus:
        return await transport.register1(user, token, timeout=timeout)

    async def recover1(transport: NodeTransport, token: str, timeout: float) -> UserStatus:
        return await transport.recover1(user, token, timeout=timeout)

    return register1 if step == "register1" else recover1


async def read_states(
    ctx: ClusterContext,
    user: UserRef,
    *,
    step: StateStep,
    need: int,
    wait_all: bool = False,
) -> StepResult[UserStatus]:
    """``step`` at every node until ``need`` answered (every answer in time with
    ``wait_all``): the answers and the per-node failures; ``.require(need)`` raises the
    step's most actionable error when too few answered."""
    return await ctx.step(
        step, user, ctx.nodes, state_rpc(step, user), need=need, wait_all=wait_all
    )
