"""Status: what each node reports for a user, and whether the secret is recoverable.

Read-only (Recover1 at every node, spends nothing). For dashboards, support tooling and the
``pakr status`` command; the verdict uses the same committed-first version choice as recovery.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pakr._cluster import ClusterContext
from pakr._operations.states import read_states
from pakr._refusals import reason, step_failure
from pakr.proto.choice import choose_version
from pakr.proto.errors import InvalidPassword, LockedOut, NotRegistered, PakrError
from pakr.proto.messages import NodeRef, UserRef, UserStatus


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's view of the user, or why it did not answer."""

    name: str
    node_id: str
    index: int
    reachable: bool
    registered: bool
    guesses_remaining: int | None  # of the version recovery would use, when this node has it
    locked: bool
    pending: bool  # holds a newer pending (uncommitted) version
    deleted: bool  # holds a tombstone
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The cluster's view of one user.

    ``registered`` is ``True`` when a version can be recovered (or is locked out), ``False``
    when the cluster says the user has no secret (never registered or deleted), and ``None``
    when the answers do not settle it. Fewer than t answers raise instead, like recovery.
    ``guesses_remaining`` is how many wrong guesses recovery can still absorb (the t-th
    largest count among the nodes holding the version).
    """

    user_id: str
    registered: bool | None
    version: str | None
    guesses_remaining: int | None
    nodes: tuple[NodeStatus, ...]
    problem: str | None = None
    locked_out: bool = False  # certain, by recovery's rule: no password opens it any more


def _node_status(status: UserStatus | None, version: bytes | None) -> tuple[bool, int | None, bool]:
    """(holds any version, guesses left for ``version``, ``version`` locked) at one node."""
    if status is None:
        return False, None, False
    for info in (status.committed, status.pending):
        if info is not None and info.version == version:
            return True, info.guesses_remaining, info.locked
    return status.committed is not None or status.pending is not None, None, False


def _locked_version(answers: dict[NodeRef, UserStatus]) -> bytes | None:
    """The version a locked-out user had: the one most nodes still report, locked or not."""
    held = Counter(
        info.version
        for status in answers.values()
        for info in (status.committed, status.pending)
        if info is not None
    )
    top = held.most_common(1)
    return top[0][0] if top else None


async def status(ctx: ClusterContext, user: UserRef) -> StatusReport:
    """Ask every node about ``user`` and summarise."""
    states = await read_states(ctx, user, step="recover1", need=ctx.threshold, wait_all=True)
    answers, errors = states.replies, states.errors
    if len(answers) < ctx.threshold:
        raise step_failure("recover1", errors, have=len(answers), need=ctx.threshold)
    registered: bool | None
    version: bytes | None = None
    remaining: int | None = None
    problem: str | None = None
    locked_out = False
    try:
        choice = choose_version(
            answers,
            {node: reason(err) for node, err in errors.items()},
            threshold=ctx.threshold,
            node_count=ctx.node_count,
        )
        registered, version = True, choice.version
    except NotRegistered as exc:
        registered, problem = False, str(exc)
    except LockedOut as exc:  # certain: registered, but no password opens it any more
        registered, problem, remaining, locked_out = True, str(exc), 0, True
        version = _locked_version(answers)
    except InvalidPassword as exc:  # no usable version on enough nodes: registered, unusable
        registered, problem, remaining = True, str(exc), 0
    except PakrError as exc:
        registered, problem = None, str(exc)
    nodes: list[NodeStatus] = []
    counts: list[int] = []
    for node in sorted(ctx.nodes, key=lambda n: n.index):
        answer = answers.get(node)
        holds, guesses, locked = _node_status(answer, version)
        locked = locked or (locked_out and guesses == 0)
        if version is not None and guesses is not None and not locked:
            counts.append(guesses)
        nodes.append(
            NodeStatus(
                name=node.name,
                node_id=node.node_id.hex(),
                index=node.index,
                reachable=answer is not None,
                registered=holds,
                guesses_remaining=guesses,
                locked=locked,
                pending=answer is not None
                and answer.pending is not None
                and answer.pending.version != version,
                deleted=answer is not None and answer.tombstone_epoch > 0,
                error=reason(errors[node]) if node in errors else None,
            )
        )
    if version is not None and not locked_out:
        counts.sort(reverse=True)
        remaining = counts[ctx.threshold - 1] if len(counts) >= ctx.threshold else 0
    return StatusReport(
        user_id=user.user_id,
        registered=registered,
        version=version.hex() if version is not None else None,
        guesses_remaining=remaining,
        nodes=tuple(nodes),
        problem=problem,
        locked_out=locked_out,
    )
