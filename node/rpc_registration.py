"""Registration RPCs: Register1 (status), Register2 (store a pending version), Register3
(commit it), and Delete. The state changes (Register2/3, Delete) each spend a single-use
token, durably, only once the request decoded and validated.
"""

from __future__ import annotations

from pakr.node.rpc_base import Context, RpcBase
from pakr.proto import wire
from pakr.proto.register import check_register2
from pakr.proto.tokens import DELETE_FRESHNESS_SECONDS
from pakr.proto.v1 import node_pb2 as pb


class RegistrationRpcs(RpcBase):
    """Register1-3 and Delete."""

    async def Register1(  # noqa: N802
        self, request: pb.Register1Request, context: Context
    ) -> pb.Register1Response:
        async def body(peer: str, now: float) -> pb.Register1Response:
            return pb.Register1Response(status=await self._status(request, context, peer, now))

        return await self._handle("Register1", context, body)

    async def Register2(  # noqa: N802
        self, request: pb.Register2Request, context: Context
    ) -> pb.Register2Response:
        async def body(peer: str, now: float) -> pb.Register2Response:
            user, message = await self._authenticate_once(
                context,
                request,
                now,
                lambda r: wire.register2_from_pb(
                    r,
                    user=wire.header_from_pb(r.header).user,
                    node_id=self.node.node_id,
                    node_key=self.hpke_key,
                ),
                check=lambda user, message: check_register2(message, user=user, node=self.node),
            )
            self.crash.hit("register2", "before_commit")
            await self._timed(
                "register_pending",
                self.store.register_pending(user, message, node=self.node, now=now, peer=peer),
            )
            self.crash.hit("register2", "after_commit")
            return pb.Register2Response()

        return await self._handle("Register2", context, body)

    async def Register3(  # noqa: N802
        self, request: pb.Register3Request, context: Context
    ) -> pb.Register3Response:
        async def body(peer: str, now: float) -> pb.Register3Response:
            user, message = await self._authenticate_once(
                context, request, now, wire.register3_from_pb
            )
            self.crash.hit("register3", "before_commit")
            await self._timed(
                "commit", self.store.commit(user, message.version, now=now, peer=peer)
            )
            self.crash.hit("register3", "after_commit")
            return pb.Register3Response()

        return await self._handle("Register3", context, body)

    async def Delete(  # noqa: N802
        self, request: pb.DeleteRequest, context: Context
    ) -> pb.DeleteResponse:
        async def body(peer: str, now: float) -> pb.DeleteResponse:
            user, message = await self._authenticate_once(
                context, request, now, wire.delete_from_pb, fresh_within=DELETE_FRESHNESS_SECONDS
            )
            self.crash.hit("delete", "before_commit")
            await self._timed("delete", self.store.delete(user, message.epoch, now=now, peer=peer))
            self.crash.hit("delete", "after_commit")
            return pb.DeleteResponse()

        return await self._handle("Delete", context, body)
