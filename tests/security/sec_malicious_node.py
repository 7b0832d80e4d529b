"""A malicious pakr node: the real gRPC API over TLS, built on the pure node steps.

It takes over one node of a local cluster (same address, id, index and TLS key pair, as an
attacker who owns that machine would), behaves honestly while ``mode`` is ``"honest"`` (so a
registration through it stores real shares in its memory), and misbehaves on demand:

=====================  ===============================================================
mode                   what it does
=====================  ===============================================================
``bad_evaluation``     Recover2: Z_i + G with the honest proof (DLEQ fails)
``wrong_key``          Recover2: a consistent lie: k', K' = k'·G, Z = k'·B, a valid proof
                       for K' (only the registration signature can catch it)
``weak_argon2``        Recover1/Register1: the version with Argon2 below the floor
``slow_argon2``        Recover1/Register1: the version with Argon2 above the ceiling
``huge``               Recover2: a reply of ~100 KiB (over the 64 KiB message limit)
``stall``              Recover2: never answers
``bad_share``          Recover3: a random s_i and ciphertext (it cannot forge the commitment)
``rollback``           Recover1: reports the replaced (older) version as its committed one
``stale_key``          Recover2: evaluates with the replaced version's k_i and presents
                       that version's signed K_i (a valid proof, an old signature)
=====================  ===============================================================

Every mode that forges a Recover2 or Recover3 reply also reports one guess left in Recover1,
which makes the client ask it first (it asks t nodes, the fewest guesses left first).

It records every ``authorization`` header it receives, so a test can try to replay the
client's token to another node.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import replace
from typing import Any

import grpc
from grpc import aio

from pakr.proto import oprf, wire
from pakr.proto.counting import Admission, admit_recover2, count_guess, node_recover2, node_recover3
from pakr.proto.delete import node_delete
from pakr.proto.errors import ErrorKind, MalformedMessage, NodeRefusal
from pakr.proto.group import Element, Scalar
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import NodeRef, UserRef, UserStatus
from pakr.proto.records import UserRecord, VersionRecord
from pakr.proto.register import node_register2, node_register3
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc as pb_grpc

LURED = frozenset({"bad_evaluation", "wrong_key", "huge", "stall", "bad_share", "stale_key"})
"""Modes that also lie in Recover1 to be asked (see ``_status``)."""

WEAK = Argon2Params(memory_kib=8, iterations=1, parallelism=1)
ABSURD = Argon2Params(memory_kib=4 * 1024 * 1024, iterations=1000, parallelism=64)


class MaliciousNode(pb_grpc.NodeServicer):  # type: ignore[misc]
    """The servicer and its server thread. ``start()``/``stop()``; set ``mode`` any time."""

    def __init__(
        self,
        ref: NodeRef,
        address: str,
        cert_pem: bytes,
        key_pem: bytes,
        hpke_key: HpkePrivateKey | None = None,
    ) -> None:
        self.ref = ref
        # The node's own HPKE key (an attacker owning the machine has it); a stranger's key
        # opens no Register2.
        self._hpke = hpke_key or HpkePrivateKey.from_seed(os.urandom(32))
        self.address = address
        self._cert = cert_pem
        self._key = key_pem
        self.mode = "honest"
        self.users: dict[UserRef, UserRecord] = {}
        self.replaced: dict[UserRef, list[VersionRecord]] = {}  # versions it should have erased
        self.tokens: list[str] = []
        self.calls: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: aio.Server | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> MaliciousNode:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        server = aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_NodeServicer_to_server(self, server)
        credentials = grpc.ssl_server_credentials([(self._key, self._cert)])
        server.add_secure_port(self.address, credentials)
        await server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
            self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- helpers ------------------------------------------------------------------------------

    def _enter(self, name: str, header: pb.RequestHeader, context: Any) -> UserRef:
        self.calls.append(name)
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                self.tokens.append(value.removeprefix("Bearer "))
        return wire.header_from_pb(header).user

    @staticmethod
    async def _refuse(context: Any, error: NodeRefusal) -> None:
        detail = wire.error_detail_to_pb(error).SerializeToString()
        context.set_trailing_metadata(((wire.ERROR_METADATA_KEY, detail),))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))

    def _status(self, user: UserRef) -> UserStatus:
        record = self.users.get(user)
        status = record.status() if record else UserStatus()
        if self.mode in ("weak_argon2", "slow_argon2") and status.committed is not None:
            params = WEAK if self.mode == "weak_argon2" else ABSURD
            status = replace(status, committed=replace(status.committed, argon2=params))
        if self.mode == "rollback" and self.replaced.get(user):
            status = replace(status, committed=self.replaced[user][0].info(), pending=None)
        if self.mode in LURED and status.committed is not None:
            # The client asks only t nodes, those with the fewest guesses left first: claim
            # one left, so this node's forged answers are sure to be used.
            status = replace(status, committed=replace(status.committed, guesses_remaining=1))
        return status

    # -- RPCs ---------------------------------------------------------------------------------

    async def Register1(self, request: pb.Register1Request, context: Any) -> Any:
        user = self._enter("Register1", request.header, context)
        return pb.Register1Response(status=wire.status_to_pb(self._status(user)))

    async def Recover1(self, request: pb.Recover1Request, context: Any) -> Any:
        user = self._enter("Recover1", request.header, context)
        return pb.Recover1Response(status=wire.status_to_pb(self._status(user)))

    async def Register2(self, request: pb.Register2Request, context: Any) -> Any:
        user = self._enter("Register2", request.header, context)
        try:
            req = wire.register2_from_pb(
                request, user=user, node_id=self.ref.node_id, node_key=self._hpke
            )
            new = node_register2(
                self.users.get(user), req, user=user, node=self.ref, now=time.time()
            )
        except NodeRefusal as exc:
            await self._refuse(context, exc)
        if new is not None:
            self.users[user] = new
        return pb.Register2Response()

    async def Register3(self, request: pb.Register3Request, context: Any) -> Any:
        user = self._enter("Register3", request.header, context)
        before = self.users.get(user)
        try:
            new = node_register3(before, bytes(request.version))
        except NodeRefusal as exc:
            await self._refuse(context, exc)
        if new is not None:
            if before is not None and before.committed is not None:
                self.replaced.setdefault(user, []).append(before.committed)
            self.users[user] = new
        return pb.Register3Response()

    async def Recover2(self, request: pb.Recover2Request, context: Any) -> Any:
        user = self._enter("Recover2", request.header, context)
        req = wire.recover2_from_pb(request)
        record = self._version(user, req.version)
        if record is None:
            await self._refuse(context, NodeRefusal(ErrorKind.NOT_REGISTERED, "no such version"))
        assert record is not None
        admission = admit_recover2(record, req, time.time())
        if admission is Admission.COUNT:
            record = count_guess(record, req, os.urandom(16), time.time())
            self._save(user, record)
        elif admission is not Admission.REPLAY:
            await self._refuse(context, NodeRefusal(ErrorKind.NO_GUESSES, admission.value))
        assert record.attempt is not None
        reply = node_recover2(record, req, nonce=record.attempt.nonce)
        if self.mode == "stall":
            await asyncio.sleep(3600)
        if self.mode == "bad_evaluation":
            reply = replace(reply, evaluated_element=reply.evaluated_element + Element.generator())
        if self.mode == "stale_key" and self.replaced.get(user):
            old = self.replaced[user][0]
            assert old.shares is not None
            k_old = old.shares.oprf_key_share
            z = oprf.blind_evaluate(k_old, req.blinded_element)
            proof = oprf.generate_proof(
                k_old,
                Element.generator(),
                old.oprf_public_share,
                [req.blinded_element],
                [z],
                r=Scalar.random(),
            )
            reply = replace(
                reply,
                evaluated_element=z,
                proof=proof,
                oprf_public_share=old.oprf_public_share,
                oprf_key_signature=old.oprf_key_signature,
                verifying_key=old.verifying_key,
                commitment=old.commitment,
            )
        if self.mode == "wrong_key":
            k = Scalar.random()
            z = oprf.blind_evaluate(k, req.blinded_element)
            key = Element.base_mult(k)
            proof = oprf.generate_proof(
                k, Element.generator(), key, [req.blinded_element], [z], r=Scalar.random()
            )
            reply = replace(reply, evaluated_element=z, oprf_public_share=key, proof=proof)
        msg = wire.recover2_reply_to_pb(reply)
        if self.mode == "huge":
            msg.nonce = os.urandom(100 * 1024)
        return msg

    async def Recover3(self, request: pb.Recover3Request, context: Any) -> Any:
        user = self._enter("Recover3", request.header, context)
        req = wire.recover3_from_pb(request)
        record = self._version(user, req.version)
        if record is None:
            await self._refuse(context, NodeRefusal(ErrorKind.NOT_REGISTERED, "no such version"))
        assert record is not None
        after, reply, _ = node_recover3(record, req, time.time())
        self._save(user, after)
        if reply is None:
            await self._refuse(context, NodeRefusal(ErrorKind.BAD_UNLOCK_TAG, "mismatch"))
        assert reply is not None
        if self.mode == "bad_share":
            reply = replace(
                reply,
                secret_share=Scalar.random(),
                encrypted_secret=os.urandom(len(reply.encrypted_secret)),
            )
        return wire.recover3_reply_to_pb(reply, user=user, node_id=self.ref.node_id, request=req)

    async def Delete(self, request: pb.DeleteRequest, context: Any) -> Any:
        user = self._enter("Delete", request.header, context)
        try:
            new = node_delete(self.users.get(user), wire.delete_from_pb(request).epoch)
        except (NodeRefusal, MalformedMessage) as exc:
            await self._refuse(context, NodeRefusal(ErrorKind.INVALID_REQUEST, str(exc)))
        if new is not None:
            self.users[user] = new
        return pb.DeleteResponse()

    async def ReadAudit(self, request: pb.ReadAuditRequest, context: Any) -> Any:
        self._enter("ReadAudit", request.header, context)
        return pb.ReadAuditResponse()

    def _version(self, user: UserRef, version: bytes) -> VersionRecord | None:
        record = self.users.get(user)
        found = record.version(version) if record else None
        if found is None:
            found = next((v for v in self.replaced.get(user, []) if v.version == version), None)
        return found

    def _save(self, user: UserRef, record: VersionRecord) -> None:
        current = self.users.get(user)
        if current is not None and current.version(record.version) is not None:
            self.users[user] = current.with_version(record)
        else:
            self.replaced[user] = [
                record if v.version == record.version else v for v in self.replaced.get(user, [])
            ]
