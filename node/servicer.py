"""The ``pakr.v1.Node`` gRPC servicer: thin glue around the store and the pure protocol steps.

Each RPC: per-peer rate limit → header (protocol version, sizes) → token → per-user rate
limit → decode and validate the body (``pakr.proto.wire``) → one store call wrapping the pure
step → encode. Everything that can fail before the store call changes nothing stored and
spends no guess. Failures become a gRPC status plus a typed ``ErrorDetail`` in the
``pakr-error-bin`` trailer; unexpected exceptions are logged on the node and answered as
INTERNAL without details — never a traceback on the wire.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from pakr.node.auth import Authenticator
from pakr.node.crash import CrashPoints
from pakr.node.metrics import NodeMetrics
from pakr.node.ratelimit import RateLimiter
from pakr.node.refusal_log import RefusalLog
from pakr.node.store.base import Store, StoreError
from pakr.proto import wire
from pakr.proto.counting import Recover3Outcome, node_recover2
from pakr.proto.errors import ErrorKind, MalformedMessage, NodeRefusal
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.messages import NONCE_LEN, NodeRef, Recover2, Recover2Reply, UserRef
from pakr.proto.node_refusals import bad_unlock_tag, stale_attempt
from pakr.proto.records import UserRecord, VersionRecord
from pakr.proto.register import check_register2
from pakr.proto.reset import issue_nonce, open_nonce
from pakr.proto.tokens import (
    DELETE_FRESHNESS_SECONDS,
    LEEWAY_SECONDS,
    SCOPE_AUDIT,
    SCOPE_USER,
    Claims,
)
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc

log = logging.getLogger("pakr.node.rpc")

# Refusals an operator wants in the audit log: a guess at a user with none left, or at a
# locked-out user (someone keeps trying). Only these: any other refusal can be provoked by
# arbitrary input, which must change nothing stored. Bounded by the per-user rate limit.
AUDITED_REFUSALS = frozenset({ErrorKind.NO_GUESSES, ErrorKind.LOCKED})
# The user the current RPC authenticated as (each gRPC call runs in its own task/context).
_AUTHENTICATED: contextvars.ContextVar[UserRef | None] = contextvars.ContextVar(
    "pakr_authenticated_user", default=None
)

R = TypeVar("R")
M = TypeVar("M")
Context = grpc.aio.ServicerContext[Any, Any]

MAX_AUDIT_LIMIT = 1000

STATUS_FOR_KIND: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.UNSPECIFIED: grpc.StatusCode.UNKNOWN,
    ErrorKind.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.INVALID_AUTH: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.NOT_REGISTERED: grpc.StatusCode.NOT_FOUND,
    ErrorKind.NO_GUESSES: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.BAD_UNLOCK_TAG: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.CONFLICT: grpc.StatusCode.ABORTED,
    ErrorKind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UPGRADE_REQUIRED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorKind.LOCKED: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorKind.STALE_ATTEMPT: grpc.StatusCode.FAILED_PRECONDITION,
}


def key_exchange_group(context: Context) -> str:
    """The TLS key-exchange group of the RPC's connection, as grpcio reports it ("none": no TLS)."""
    values = list(context.auth_context().get("ssl_negotiated_key_exchange_group", ()))
    return values[0].decode("ascii", "replace") if values else "none"


def peer_host(context: Context) -> str:
    """The client's address without its port ("ipv4:1.2.3.4", "ipv6:[::1]", "unix:...")."""
    peer = context.peer() or "unknown"
    if peer.startswith(("ipv4:", "ipv6:")):
        host, sep, port = peer.rpartition(":")
        if sep and port.isdigit():
            return host
    return peer


class NodeServicer(node_pb2_grpc.NodeServicer):
    """Serves one node identity from one :class:`~pakr.node.store.base.Store`."""

    def __init__(
        self,
        *,
        node: NodeRef,
        store: Store,
        auth: Authenticator,
        limiter: RateLimiter,
        metrics: NodeMetrics,
        crash: CrashPoints | None = None,
        clock: Callable[[], float] = time.time,
        crypto_thread: bool = False,
        hpke_key: HpkePrivateKey,
        reset_key: bytes | None = None,
    ) -> None:
        self.node = node
        self.hpke_key = hpke_key
        # MACs the Recover1 reset nonces; derived from the data key so replicas agree
        self.reset_key = reset_key if reset_key is not None else os.urandom(32)
        self.store = store
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.crash = crash or CrashPoints()
        self.clock = clock
        self.refusal_log = RefusalLog()
        self._crypto = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pakr-crypto")
            if crypto_thread
            else None
        )

    def close(self) -> None:
        if self._crypto is not None:
            self._crypto.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ plumbing

    def guarded(
        self, method: str, rpc: Callable[[Any, Context], Awaitable[R]]
    ) -> Callable[[Any, Context], Awaitable[R]]:
        """``rpc``, answering an unparseable request body with a typed INVALID_REQUEST."""

        async def call(request: Any, context: Context) -> R:
            if isinstance(request, _Undecodable):
                why = request.why

                async def refuse(peer: str, now: float) -> R:
                    raise MalformedMessage(why)

                return await self._handle(method, context, refuse)
            return await rpc(request, context)

        return call

    async def _handle(
        self,
        method: str,
        context: Context,
        body: Callable[[str, float], Awaitable[R]],
    ) -> R:
        started = time.perf_counter()
        peer = peer_host(context)
        outcome = "ok"
        refusal: NodeRefusal | None = None
        try:
            now = self.clock()
            self.limiter.check_peer(peer, now)
            return await body(peer, now)
        except NodeRefusal as exc:
            refusal = exc
        except MalformedMessage as exc:
            refusal = NodeRefusal(ErrorKind.INVALID_REQUEST, f"malformed request: {exc}")
        except StoreError as exc:
            self.metrics.store_errors.inc()
            log.error(
                "store failure",
                extra={"fields": {"method": method, "error": str(exc)}},
            )
            refusal = NodeRefusal(
                ErrorKind.UNAVAILABLE, "the node's storage is unavailable; try another node"
            )
        except Exception:
            log.exception("unexpected error", extra={"fields": {"method": method}})
            refusal = NodeRefusal(ErrorKind.INTERNAL, "internal error on the node; see its log")
        finally:
            if refusal is not None:
                outcome = refusal.kind.name.lower()
            self.metrics.observe(method, outcome, time.perf_counter() - started)
            self.metrics.key_exchange.labels(key_exchange_group(context)).inc()
        assert refusal is not None
        await self._audit_refusal(method, refusal, peer)
        held = self.refusal_log.admit(
            peer, time.monotonic(), self.metrics.refusal_logs_suppressed.inc
        )
        if held is not None:
            level = logging.WARNING if refusal.kind is ErrorKind.INTERNAL else logging.INFO
            fields = {"method": method, "kind": outcome, "peer": peer, "held_back": held}
            log.log(level, "request refused", extra={"fields": fields})
        detail = wire.error_detail_to_pb(refusal)
        context.set_trailing_metadata(((wire.ERROR_METADATA_KEY, detail.SerializeToString()),))
        await context.abort(STATUS_FOR_KIND[refusal.kind], str(refusal))
        raise AssertionError("context.abort returned")  # pragma: no cover

    async def _audit_refusal(self, method: str, refusal: NodeRefusal, peer: str) -> None:
        """Record a refused request of an authenticated user (``refused``, kind and RPC)."""
        user = _AUTHENTICATED.get()
        if user is None or not user.user_id or refusal.kind not in AUDITED_REFUSALS:
            return
        try:
            await self.store.append_audit(
                user,
                "refused",
                f"{refusal.kind.name.lower()} ({method})",
                now=self.clock(),
                peer=peer,
            )
        except StoreError as exc:  # the refusal stands; the log says the row is missing
            log.error("audit write failed", extra={"fields": {"error": str(exc)}})

    def _authenticate(
        self,
        context: Context,
        header: pb.RequestHeader,
        now: float,
        *,
        scope: str = SCOPE_USER,
        single_use: bool = False,
        fresh_within: float | None = None,
    ) -> UserRef:
        return self._authenticate_claims(
            context,
            header,
            now,
            scope=scope,
            single_use=single_use,
            fresh_within=fresh_within,
        )[0]

    def _authenticate_claims(
        self,
        context: Context,
        header: pb.RequestHeader,
        now: float,
        *,
        scope: str = SCOPE_USER,
        single_use: bool = False,
        fresh_within: float | None = None,
    ) -> tuple[UserRef, Claims]:
        parsed = wire.header_from_pb(header, allow_empty_user=scope == SCOPE_AUDIT)
        claims = self.auth.authenticate(
            context.invocation_metadata(),
            parsed.user,
            scope=scope,
            now=now,
            single_use=single_use,
            fresh_within=fresh_within,
            any_user=scope == SCOPE_AUDIT,
        )
        self.limiter.check_user(f"{parsed.user.tenant}\x00{parsed.user.user_id}", now)
        _AUTHENTICATED.set(parsed.user)
        return parsed.user, claims

    async def _authenticate_once(
        self,
        context: Context,
        request: Any,
        now: float,
        decode: Callable[[Any], M],
        *,
        fresh_within: float | None = None,
        check: Callable[[UserRef, M], None] | None = None,
    ) -> tuple[UserRef, M]:
        """Authenticate a state change (Register2/3, Delete): check the single-use token (not
        yet spent), the per-user rate limit, decode the request, then spend the token, in
        memory and durably, in that order: a request refused for bad input or a rate limit
        changes nothing stored and leaves the token to its good retry."""
        user, claims = self._authenticate_claims(
            context, request.header, now, single_use=True, fresh_within=fresh_within
        )
        message = decode(request)
        if check is not None:
            check(user, message)  # stateless validation (e.g. the Register2 signature)
        self.auth.consume(claims, now)
        await self._claim_once(claims, now)
        return user, message

    async def _claim_once(self, claims: Claims, now: float) -> None:
        """Record a single-use token (Register2/3, Delete) durably, after the request decoded.

        The in-memory cache of :class:`~pakr.node.auth.Authenticator` answers replays fast;
        this store row makes the refusal survive a restart and hold across replicas sharing
        one database. Called only for well-formed requests, so bad input changes nothing.
        Tenant names never contain ':', so ``tenant:jti`` is unambiguous.
        """
        fresh = await self._timed(
            "claim_token",
            self.store.claim_token(
                f"{claims.tenant}:{claims.jti}", claims.exp + LEEWAY_SECONDS, now=now
            ),
        )
        if not fresh:
            raise NodeRefusal(
                ErrorKind.INVALID_AUTH,
                "access token rejected: already used (mint a new token for every state change)",
            )

    async def _evaluate(
        self, record: VersionRecord, message: Recover2, nonce: bytes
    ) -> Recover2Reply:
        """``node_recover2``, on the crypto thread when enabled (``node.crypto_thread``).

        libsodium (via ctypes) releases the GIL, so on a host with a spare core the scalar
        multiplications (~0.3 ms a call) overlap with gRPC work on the event loop (1.6 times in
        process). On a saturated machine the thread hand-offs cost more CPU than they save
        (bench/node_throughput.py: ~0.75 ms vs ~1 ms per call), hence off by default."""
        if self._crypto is None:
            return node_recover2(record, message, nonce=nonce)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._crypto, functools.partial(node_recover2, record, message, nonce=nonce)
        )

    async def _timed(self, op: str, call: Awaitable[R]) -> R:
        started = time.perf_counter()
        try:
            return await call
        finally:
            self.metrics.store_latency.labels(op).observe(time.perf_counter() - started)

    async def _current(self, user: UserRef, now: float, peer: str) -> UserRecord | None:
        """The user's record, after lazily locking versions whose lockout is due."""
        record = await self._timed("get_user", self.store.get_user(user))
        if record is None:
            return None
        due = [v for v in (record.committed, record.pending) if v and v.lockout_due(now)]
        for version in due:
            locked = await self._timed(
                "lock_version", self.store.lock_version(user, version.version, now=now, peer=peer)
            )
            if locked:
                self.metrics.lockouts.inc()
        if due:
            record = await self._timed("get_user", self.store.get_user(user))
        return record

    # ------------------------------------------------------------------ RPCs

    async def _status(self, request: Any, context: Context, peer: str, now: float) -> pb.UserStatus:
        user = self._authenticate(context, request.header, now)
        record = await self._current(user, now, peer)
        status = record.status() if record is not None else UserRecord().status()
        return wire.status_to_pb(status)

    async def Register1(  # noqa: N802
        self, request: pb.Register1Request, context: Context
    ) -> pb.Register1Response:
        async def body(peer: str, now: float) -> pb.Register1Response:
            return pb.Register1Response(status=await self._status(request, context, peer, now))

        return await self._handle("Register1", context, body)

    async def Recover1(  # noqa: N802
        self, request: pb.Recover1Request, context: Context
    ) -> pb.Recover1Response:
        async def body(peer: str, now: float) -> pb.Recover1Response:
            status = await self._status(request, context, peer, now)
            user = wire.header_from_pb(request.header).user
            nonce = issue_nonce(self.reset_key, user, now)
            return pb.Recover1Response(status=status, reset_nonce=nonce)

        return await self._handle("Recover1", context, body)

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


class _Undecodable:
    """Stands for a request body that is too large or not a valid protobuf of the method's
    request type; ``why`` is the refusal's message."""

    def __init__(self, why: str) -> None:
        self.why = why


def tolerant_parser(message_type: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        if len(data) > wire.MAX_MESSAGE_BYTES:
            return _Undecodable(f"the request body is larger than {wire.MAX_MESSAGE_BYTES} bytes")
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError, RuntimeError):
            return _Undecodable(f"the request body is not a valid {message_type.__name__}")

    return parse


def add_to_server(servicer: NodeServicer, server: grpc.aio.Server) -> None:
    """Register the ``pakr.v1.Node`` service on ``server``.

    Unlike the generated ``add_NodeServicer_to_server``, a request body that does not parse
    reaches the servicer, which answers INVALID_REQUEST with the typed error detail (counted,
    logged and rate limited like any refusal) instead of gRPC's bare UNKNOWN status.
    """
    service = pb.DESCRIPTOR.services_by_name["Node"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            servicer.guarded(method.name, getattr(servicer, method.name)),
            request_deserializer=tolerant_parser(request_type),
            response_serializer=response_type.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
