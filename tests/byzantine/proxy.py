"""A lying gRPC proxy in front of one real node process.

The Byzantine matrix needs nodes that lie in any field of any reply while everything else
stays real: the node processes, their SQLite stores, guess counting, tokens, TLS and the wire
schema. So each node of a local cluster gets a :class:`LyingProxy`: a gRPC server on its own
loopback port that presents the node's own TLS certificate and key (as an attacker who owns
that machine would), forwards every call byte for byte to the real node over TLS, and rewrites
the reply per the current :class:`Lie` for that method: it decodes the protobuf reply, changes
a field, re-encodes it, or stalls, hangs, or answers with a typed refusal. The client under
test is built with a transport factory that points each node at its proxy; nothing else
changes (same manifest, same certificate pin).

The proxy runs on its own event loop in a daemon thread, so tests drive it from the sync
``pakr.Client`` and switch lies at any time (``proxy.lies[method] = lie``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from pakr.proto import wire
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.v1 import node_pb2 as pb

SERVICE = "pakr.v1.Node"
REPLY_TYPES: dict[str, Any] = {
    "Register1": pb.Register1Response,
    "Register2": pb.Register2Response,
    "Register3": pb.Register3Response,
    "Recover1": pb.Recover1Response,
    "Recover2": pb.Recover2Response,
    "Recover3": pb.Recover3Response,
    "Delete": pb.DeleteResponse,
    "ReadAudit": pb.ReadAuditResponse,
}


@dataclass(frozen=True)
class Lie:
    """What a lying node does to one method's reply.

    ``rewrite`` changes the decoded reply in place (after the real node answered: its guess is
    counted as usual). ``stall`` delays the answer by that many seconds. ``refuse`` answers
    with that typed error instead of the real reply. ``before`` skips the real node entirely
    (refusals and hangs that never reach it).
    """

    name: str
    rewrite: Callable[[Any], None] | None = None
    stall: float = 0.0
    refuse: ErrorKind | None = None
    before: bool = False

    def __repr__(self) -> str:
        return self.name


class LyingProxy:
    """Forwards ``pakr.v1.Node`` calls to ``target`` over TLS; rewrites per :attr:`lies`."""

    def __init__(self, target: str, cert_pem: bytes, key_pem: bytes) -> None:
        self.target = target
        self._cert = cert_pem
        self._key = key_pem
        self.lies: dict[str, Lie] = {}
        self.calls: dict[str, int] = {}
        self.answered: dict[str, int] = {}  # calls whose (rewritten) reply was sent
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: aio.Server | None = None
        self._channel: aio.Channel | None = None

    def start(self) -> LyingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=self._cert)
        options = [("grpc.max_receive_message_length", 4 * wire.MAX_MESSAGE_BYTES)]
        self._channel = aio.secure_channel(self.target, credentials, options=options)
        server = aio.server(options=options)
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(self._handler(name)) for name in REPLY_TYPES
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        port = server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(self._key, self._cert)])
        )
        await server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"

    def stop(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                await self._server.stop(0)
            if self._channel is not None:
                await self._channel.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _handler(self, method: str) -> Callable[[bytes, Any], Any]:
        async def handle(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
            self.calls[method] = self.calls.get(method, 0) + 1
            lie = self.lies.get(method)
            if lie is not None and lie.before:
                if lie.stall:
                    await asyncio.sleep(lie.stall)
                await self._refuse(context, lie)
            reply = await self._forward(method, request, context)
            if lie is None:
                return reply
            if lie.stall:
                await asyncio.sleep(lie.stall)
            if lie.refuse is not None:
                await self._refuse(context, lie)
            if lie.rewrite is not None:
                message = REPLY_TYPES[method].FromString(reply)
                lie.rewrite(message)
                reply = message.SerializeToString()
            if not context.cancelled():
                self.answered[method] = self.answered.get(method, 0) + 1
            return reply

        return handle

    async def _refuse(self, context: aio.ServicerContext[Any, Any], lie: Lie) -> None:
        kind = lie.refuse or ErrorKind.UNAVAILABLE
        refusal = NodeRefusal(kind, f"refused ({lie.name})", guesses_remaining=0)
        detail = wire.error_detail_to_pb(refusal).SerializeToString()
        context.set_trailing_metadata(((wire.ERROR_METADATA_KEY, detail),))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(refusal))

    async def _forward(
        self, method: str, request: bytes, context: aio.ServicerContext[Any, Any]
    ) -> bytes:
        assert self._channel is not None
        call = self._channel.unary_unary(f"/{SERVICE}/{method}")
        metadata = tuple(
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if not key.startswith(":") and key not in ("user-agent", "te", "content-type")
        )
        remaining = context.time_remaining()
        try:
            reply: bytes = await call(request, metadata=metadata, timeout=remaining)
        except aio.AioRpcError as error:
            context.set_trailing_metadata(tuple(error.trailing_metadata() or ()))
            await context.abort(error.code(), error.details() or "")
        return reply
