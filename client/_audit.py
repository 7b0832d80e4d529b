"""Reading the nodes' audit logs: who registered, spent a guess, was locked out, deleted.

Every node keeps its own append-only audit log (rows written in the same transaction as the
change they record), readable with an audit-scope token for a whole tenant or one user.
:func:`read_audit` asks every node and merges the rows by time into one page; the page's
``cursor`` (each node's last row id) continues where it stopped, so a later call also picks
up new events. A node that does not answer is named in ``unreachable`` and its rows are
picked up by a later page.

The events (``op``): ``registered`` (outcome ``pending``, then ``committed``),
``guess_used`` (``remaining=K``), ``unlock_failed`` (a wrong password), ``share_released``
(a successful recovery), ``locked``, ``deleted`` and ``refused`` (a guess the node turned
down: ``no_guesses`` or ``locked``, with the RPC).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pakr._cluster import ClusterContext
from pakr._refusals import reason
from pakr._tokens import TokenCache, TokenProvider
from pakr._transport import NodeTransport
from pakr.proto.errors import ConfigError
from pakr.proto.messages import AuditRow, UserRef

MAX_PAGE = 1000  # the nodes' own limit per ReadAudit
TENANT_WIDE_SUBJECT = "*"
"""The user id audit token providers are asked for when reading a whole tenant's log."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit row of one node."""

    node: str  # the node's name, e.g. node3(1a2b3c4d)
    node_index: int
    id: int  # the row id in that node's log
    time: float  # Unix time
    user_id: str
    op: str
    outcome: str
    peer: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Events of every node that answered, oldest first.

    ``cursor``: pass it back as ``cursor=`` for the events after these. ``more``: whether
    the nodes hold more events already (a later call may find new ones either way).
    ``unreachable`` names the nodes that did not answer, with why.
    """

    events: tuple[AuditEvent, ...]
    cursor: str
    more: bool
    unreachable: dict[str, str] = field(default_factory=dict)


def parse_cursor(cursor: str | None) -> dict[int, int]:
    """``"1:17,2:20"`` → {node index: last row id seen}."""
    if not cursor:
        return {}
    positions: dict[int, int] = {}
    try:
        for item in cursor.split(","):
            index, _, after = item.partition(":")
            positions[int(index)] = int(after)
    except ValueError:
        raise ConfigError(f"not an audit cursor: {cursor!r} (pass back a page's cursor)") from None
    if any(v < 0 for v in positions.values()):
        raise ConfigError(f"not an audit cursor: {cursor!r}")
    return positions


def format_cursor(positions: dict[int, int]) -> str:
    return ",".join(f"{index}:{after}" for index, after in sorted(positions.items()))


async def read_audit(
    ctx: ClusterContext,
    token_provider: TokenProvider,
    user_id: str | None,
    *,
    cursor: str | None,
    limit: int,
) -> AuditPage:
    """One merged page of the audit logs of every node (see the module docstring)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ConfigError(f"limit must be 1..{MAX_PAGE}, not {limit}")
    after = parse_cursor(cursor)
    header_user = UserRef(ctx.tenant, user_id or "")
    token_user = UserRef(ctx.tenant, user_id or TENANT_WIDE_SUBJECT)
    # Audit tokens have their own provider and must not share the user-token cache.
    audit_ctx = replace(ctx, token_provider=token_provider, tokens=TokenCache())

    async def rpc(transport: NodeTransport, token: str, timeout: float) -> tuple[AuditRow, ...]:
        return await transport.read_audit(
            header_user,
            token,
            after_id=after.get(transport.node.index, 0),
            limit=limit,
            timeout=timeout,
        )

    result = await audit_ctx.step("read_audit", token_user, ctx.nodes, rpc, need=1, wait_all=True)
    if not result.replies:
        raise result.failure(1)
    merged = sorted(
        (
            AuditEvent(
                node=node.name,
                node_index=node.index,
                id=row.id,
                time=row.time,
                user_id=row.user_id,
                op=row.op,
                outcome=row.outcome,
                peer=row.peer,
            )
            for node, rows in result.replies.items()
            for row in rows
        ),
        key=lambda e: (e.time, e.node_index, e.id),
    )
    page = merged[:limit]
    positions = {node.index: after.get(node.index, 0) for node in ctx.nodes}
    for event in page:
        positions[event.node_index] = max(positions[event.node_index], event.id)
    more = len(merged) > limit or any(len(rows) == limit for rows in result.replies.values())
    return AuditPage(
        events=tuple(page),
        cursor=format_cursor(positions),
        more=more,
        unreachable={node.name: reason(err) for node, err in result.errors.items()},
    )
