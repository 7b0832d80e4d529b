"""Operator RPCs (token scope ``audit``): ReadAudit (the tenant's or a user's audit log) and
ListVersions (version metadata for the under-replication report; no share is read).
"""

from __future__ import annotations

from pakr.node.rpc_base import MAX_AUDIT_LIMIT, Context, RpcBase
from pakr.proto import wire
from pakr.proto.errors import MalformedMessage
from pakr.proto.tokens import SCOPE_AUDIT
from pakr.proto.v1 import node_pb2 as pb


class OperatorRpcs(RpcBase):
    """ReadAudit and ListVersions."""

    async def ReadAudit(  # noqa: N802
        self, request: pb.ReadAuditRequest, context: Context
    ) -> pb.ReadAuditResponse:
        async def body(peer: str, now: float) -> pb.ReadAuditResponse:
            user = self._authenticate(context, request.header, now, scope=SCOPE_AUDIT)
            if not 1 <= request.limit <= MAX_AUDIT_LIMIT:
                raise MalformedMessage(f"limit must be 1..{MAX_AUDIT_LIMIT}")
            if request.after_id < 0:
                raise MalformedMessage("after_id must be >= 0")
            rows = await self._timed(
                "read_audit",
                self.store.read_audit(
                    user.tenant,
                    user.user_id or None,
                    after_id=request.after_id,
                    limit=request.limit,
                ),
            )
            return pb.ReadAuditResponse(
                entries=[
                    pb.AuditEntry(
                        id=r.id,
                        time=r.time,
                        tenant=r.tenant,
                        user_id=r.user_id,
                        op=r.op,
                        outcome=r.outcome,
                        peer=r.peer,
                    )
                    for r in rows
                ]
            )

        return await self._handle("ReadAudit", context, body)

    async def ListVersions(  # noqa: N802
        self, request: pb.ListVersionsRequest, context: Context
    ) -> pb.ListVersionsResponse:
        """The tenant's users with version metadata only (scope ``audit``): what the
        operator's under-replication report compares across nodes."""

        async def body(peer: str, now: float) -> pb.ListVersionsResponse:
            user = self._authenticate(context, request.header, now, scope=SCOPE_AUDIT)
            if not 1 <= request.limit <= MAX_AUDIT_LIMIT:
                raise MalformedMessage(f"limit must be 1..{MAX_AUDIT_LIMIT}")
            rows = await self._timed(
                "list_versions",
                self.store.list_versions(
                    user.tenant, after_user_id=request.after_user_id, limit=request.limit
                ),
            )
            return pb.ListVersionsResponse(
                users=[
                    pb.UserVersions(user_id=user_id, status=wire.status_to_pb(status))
                    for user_id, status in rows
                ]
            )

        return await self._handle("ListVersions", context, body)
