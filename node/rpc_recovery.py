"""Recovery RPCs: Recover1 (status and a reset nonce), Recover2 (count the guess durably,
then evaluate), Recover3 (release the share on a matching unlock proof) and ResetGuesses.
"""

from __future__ import annotations

import os

from pakr.node.rpc_base import Context, RpcBase
from pakr.proto import wire
from pakr.proto.counting import Recover3Outcome
from pakr.proto.lengths import NONCE_LEN
from pakr.proto.node_refusals import bad_unlock_tag, stale_attempt
from pakr.proto.reset import issue_nonce, open_nonce
from pakr.proto.v1 import node_pb2 as pb


class RecoveryRpcs(RpcBase):
    """Recover1-3 and ResetGuesses."""

    async def Recover1(  # noqa: N802
        self, request: pb.Recover1Request, context: Context
    ) -> pb.Recover1Response:
        async def body(peer: str, now: float) -> pb.Recover1Response:
            status = await self._status(request, context, peer, now)
            user = wire.header_from_pb(request.header).user
            nonce = issue_nonce(self.reset_key, user, now)
            return pb.Recover1Response(status=status, reset_nonce=nonce)

        return await self._handle("Recover1", context, body)

    async def Recover2(  # noqa: N802
        self, request: pb.Recover2Request, context: Context
    ) -> pb.Recover2Response:
        async def body(peer: str, now: float) -> pb.Recover2Response:
            user = self._authenticate(context, request.header, now)
            message = wire.recover2_from_pb(request)
            self.crash.hit("recover2", "before_commit")
            result = await self._timed(
                "count_guess",
                self.store.count_guess(
                    user, message, nonce=os.urandom(NONCE_LEN), now=now, peer=peer
                ),
            )
            self.crash.hit("recover2", "after_commit")
            if result.counted:
                self.metrics.guesses.inc()
            attempt = result.record.attempt
            assert attempt is not None
            reply = await self._evaluate(result.record, message, attempt.nonce)
            return wire.recover2_reply_to_pb(reply)

        return await self._handle("Recover2", context, body)

    async def Recover3(  # noqa: N802
        self, request: pb.Recover3Request, context: Context
    ) -> pb.Recover3Response:
        async def body(peer: str, now: float) -> pb.Recover3Response:
            user = self._authenticate(context, request.header, now)
            message = wire.recover3_from_pb(request)
            self.crash.hit("recover3", "before_commit")
            result = await self._timed(
                "release", self.store.release(user, message, now=now, peer=peer)
            )
            self.crash.hit("recover3", "after_commit")
            if result.locked:
                self.metrics.lockouts.inc()
            if result.outcome is Recover3Outcome.MATCH:
                assert result.reply is not None
                return wire.recover3_reply_to_pb(
                    result.reply, user=user, node_id=self.node.node_id, request=message
                )
            if result.outcome is Recover3Outcome.MISMATCH:
                raise bad_unlock_tag(result.record.guesses_remaining)
            raise stale_attempt()

        return await self._handle("Recover3", context, body)

    async def ResetGuesses(  # noqa: N802
        self, request: pb.ResetGuessesRequest, context: Context
    ) -> pb.ResetGuessesResponse:
        """Reset this node's count of the recovered version (§4a): the nonce must be one this
        node issued for the user and unexpired, the proof under its unlock tag; the store
        spends the nonce and resets in one transaction. Refusals reset nothing."""

        async def body(peer: str, now: float) -> pb.ResetGuessesResponse:
            user = self._authenticate(context, request.header, now)
            message = wire.reset_from_pb(request)
            expires_at = open_nonce(self.reset_key, user, message.nonce, now)
            await self._current(user, now, peer)  # a due lockout erases before any reset
            await self._timed(
                "reset_guesses",
                self.store.reset_guesses(user, message, expires_at=expires_at, now=now, peer=peer),
            )
            return pb.ResetGuessesResponse()

        return await self._handle("ResetGuesses", context, body)
