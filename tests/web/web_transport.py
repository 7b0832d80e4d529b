"""The Python SDK's :class:`~pakr.transport.NodeTransport` over a node's web listener.

It speaks the Connect protocol (or gRPC-Web) with httpx exactly as a browser's connect-web
transport does, to the ``web_origin`` the manifest lists, so the SDK's real protocol core
(registration, recovery, heal, verification) runs end to end through the web listener.
The bytes are built here by hand, not by connectrpc's client: what the tests accept is then
what a TypeScript client must send, not what one Python library agrees with itself on.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import httpx

from pakr import NodeTransport
from pakr.errors import NodeUnreachable
from pakr.proto import wire
from pakr.proto.errors import MalformedMessage, NodeRefusal
from pakr.proto.manifest import Manifest, ManifestNode
from pakr.proto.messages import (
    REQUEST_ID_LEN,
    AuditRow,
    Delete,
    NodeRef,
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    Register2,
    Register3,
    ResetGuesses,
    UserRef,
    UserStatus,
)
from pakr.proto.v1 import node_pb2 as pb

SERVICE = "pakr.v1.Node"


def b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (Connect and gRPC-Web send either)."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def same_refusal(refusal: NodeRefusal) -> tuple[object, ...]:
    """What two refusals must share to be the same typed error."""
    return (refusal.kind, str(refusal), refusal.guesses_remaining, refusal.retry_after)


def refusal_from_detail(text: str | None) -> NodeRefusal | None:
    if text is None:
        return None
    return wire.error_detail_from_bytes(b64decode(text))


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """gRPC-Web frames: flag byte, uint32 big-endian length, payload."""
    out = []
    while body:
        if len(body) < 5:
            raise MalformedMessage("truncated gRPC-Web frame")
        flags, length = struct.unpack(">BI", body[:5])
        if len(body) < 5 + length:
            raise MalformedMessage("truncated gRPC-Web frame")
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def trailer_lines(payload: bytes) -> dict[str, str]:
    trailers: dict[str, str] = {}
    for line in payload.decode("ascii").split("\r\n"):
        if line:
            key, _, value = line.partition(":")
            trailers[key.strip().lower()] = value.strip()
    return trailers


class WebTransport:
    """One node over its web listener (Connect by default, ``grpc_web=True`` for gRPC-Web)."""

    def __init__(
        self,
        node: ManifestNode,
        *,
        grpc_web: bool = False,
        origin: str | None = "http://localhost:5173",
        verify: Any = True,
        calls: list[str] | None = None,
    ) -> None:
        assert node.web_origin is not None, "the manifest lists no web_origin for this node"
        self._manifest_node = node
        self._base = node.web_origin
        self._grpc_web = grpc_web
        self._origin = origin
        self._verify = verify
        self._client: httpx.AsyncClient | None = None
        self.calls = calls if calls is not None else []

    @property
    def node(self) -> NodeRef:
        return self._manifest_node.ref

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self._base, verify=self._verify)
        return self._client

    async def call(
        self, method: str, request: Any, response_type: Any, token: str, timeout: float
    ) -> Any:
        self.calls.append(method)
        message = request.SerializeToString()
        headers = {"authorization": f"Bearer {token}"}
        if self._origin is not None:
            headers["origin"] = self._origin
        if self._grpc_web:
            headers |= {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
            body = struct.pack(">BI", 0, len(message)) + message
        else:
            headers |= {
                "content-type": "application/proto",
                "connect-protocol-version": "1",
                "connect-timeout-ms": str(max(1, int(timeout * 1000))),
            }
            body = message
        try:
            reply = await self._http().post(
                f"/{SERVICE}/{method}", content=body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise NodeUnreachable(f"web listener: {type(exc).__name__}") from None
        if self._origin is not None:
            assert reply.headers.get("access-control-allow-origin") == self._origin
        if self._grpc_web:
            return self._grpc_web_reply(reply, response_type)
        return self._connect_reply(reply, response_type)

    @staticmethod
    def _connect_reply(reply: httpx.Response, response_type: Any) -> Any:
        if reply.status_code == 200:
            if reply.headers.get("content-type") != "application/proto":
                raise MalformedMessage("web listener answered without application/proto")
            return response_type.FromString(reply.content)
        refusal = refusal_from_detail(reply.headers.get(f"trailer-{wire.ERROR_METADATA_KEY}"))
        if refusal is not None:
            body = json.loads(reply.content)
            details = [d for d in body.get("details", []) if d["type"] == "pakr.v1.ErrorDetail"]
            in_details = refusal_from_detail(details[0]["value"]) if details else None
            assert in_details is not None and same_refusal(in_details) == same_refusal(refusal)
            raise refusal
        raise NodeUnreachable(f"web listener: HTTP {reply.status_code}")

    @staticmethod
    def _grpc_web_reply(reply: httpx.Response, response_type: Any) -> Any:
        if reply.status_code != 200:
            raise NodeUnreachable(f"web listener: HTTP {reply.status_code}")
        parts = frames(reply.content)
        data = [payload for flags, payload in parts if not flags & 0x80]
        trailers: dict[str, str] = {}
        for flags, payload in parts:
            if flags & 0x80:
                trailers |= trailer_lines(payload)
        status = trailers.get("grpc-status", reply.headers.get("grpc-status"))
        if status == "0" and len(data) == 1:
            return response_type.FromString(data[0])
        refusal = refusal_from_detail(trailers.get(wire.ERROR_METADATA_KEY))
        if refusal is not None:
            raise refusal
        raise NodeUnreachable(f"web listener: grpc-status {status}")

    @staticmethod
    def _header(user: UserRef) -> pb.RequestHeader:
        return wire.header_to_pb(os.urandom(REQUEST_ID_LEN), user)

    async def register1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        msg = pb.Register1Request(header=self._header(user))
        reply = await self.call("Register1", msg, pb.Register1Response, token, timeout)
        return wire.status_from_pb(reply.status)

    async def register2(
        self, user: UserRef, token: str, request: Register2, *, timeout: float
    ) -> None:
        node = self._manifest_node
        assert node.hpke_public_key is not None
        msg = wire.register2_to_pb(
            self._header(user), request, node_id=node.node_id, node_key=node.hpke_public_key
        )
        await self.call("Register2", msg, pb.Register2Response, token, timeout)

    async def register3(
        self, user: UserRef, token: str, request: Register3, *, timeout: float
    ) -> None:
        msg = pb.Register3Request(header=self._header(user), version=request.version)
        await self.call("Register3", msg, pb.Register3Response, token, timeout)

    async def recover1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        msg = pb.Recover1Request(header=self._header(user))
        reply = await self.call("Recover1", msg, pb.Recover1Response, token, timeout)
        return wire.recover1_status_from_pb(reply)

    async def recover2(
        self, user: UserRef, token: str, request: Recover2, *, timeout: float
    ) -> Recover2Reply:
        msg = wire.recover2_to_pb(self._header(user), request)
        reply = await self.call("Recover2", msg, pb.Recover2Response, token, timeout)
        return wire.recover2_reply_from_pb(reply)

    async def recover3(
        self, user: UserRef, token: str, request: Recover3, *, timeout: float
    ) -> Recover3Reply:
        msg = wire.recover3_to_pb(self._header(user), request)
        reply = await self.call("Recover3", msg, pb.Recover3Response, token, timeout)
        return wire.recover3_reply_from_pb(
            reply, user=user, node_id=self._manifest_node.node_id, request=request
        )

    async def reset_guesses(
        self, user: UserRef, token: str, request: ResetGuesses, *, timeout: float
    ) -> None:
        msg = wire.reset_to_pb(self._header(user), request)
        await self.call("ResetGuesses", msg, pb.ResetGuessesResponse, token, timeout)

    async def delete(self, user: UserRef, token: str, request: Delete, *, timeout: float) -> None:
        msg = pb.DeleteRequest(header=self._header(user), epoch=request.epoch)
        await self.call("Delete", msg, pb.DeleteResponse, token, timeout)

    async def read_audit(
        self, user: UserRef, token: str, *, after_id: int, limit: int, timeout: float
    ) -> tuple[AuditRow, ...]:
        msg = pb.ReadAuditRequest(header=self._header(user), after_id=after_id, limit=limit)
        reply = await self.call("ReadAudit", msg, pb.ReadAuditResponse, token, timeout)
        return wire.audit_rows_from_pb(reply)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def web_transport_factory(
    *,
    grpc_web: bool = False,
    calls: list[str] | None = None,
    origin: str | None = None,
    verify: Any = True,
) -> Any:
    """A ``transport_factory`` for ``pakr.Client.from_manifest`` that uses the web listener."""

    def make(node: ManifestNode, manifest: Manifest) -> NodeTransport:
        kwargs: dict[str, Any] = {"grpc_web": grpc_web, "calls": calls, "verify": verify}
        if origin is not None:
            kwargs["origin"] = origin
        return WebTransport(node, **kwargs)

    return make
