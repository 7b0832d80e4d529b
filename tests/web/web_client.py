"""A test client for the node's web listener, speaking the wire protocols a browser's
connect-web transports speak, byte for byte, over httpx: the Connect protocol (unary,
binary protobuf) and gRPC-Web (binary). No connectrpc client code: these bytes are what
the TypeScript SDK must send and parse, so the tests pin them down independently."""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

import httpx

from pakr.proto import wire
from pakr.proto.errors import NodeRefusal

SERVICE = "pakr.v1.Node"


@dataclass
class WebError(Exception):
    """A non-OK answer: its Connect/gRPC code, message and the typed pakr refusal."""

    code: str
    message: str
    refusal: NodeRefusal | None
    detail_from_details: NodeRefusal | None
    headers: httpx.Headers


def _refusal(value: str | None) -> NodeRefusal | None:
    if value is None:
        return None
    return wire.error_detail_from_bytes(base64.b64decode(value + "=" * (-len(value) % 4)))


def connect_call(
    client: httpx.Client,
    method: str,
    request: Any,
    response_type: Any,
    *,
    token: str | None = None,
    origin: str | None = None,
) -> Any:
    """One Connect unary call: POST /pakr.v1.Node/<method>, Content-Type application/proto,
    body = the serialized request; 200 → the serialized response; else a JSON error body and
    the detail in the ``trailer-pakr-error-bin`` header (and in ``details``)."""
    headers = {"content-type": "application/proto", "connect-protocol-version": "1"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["origin"] = origin
    reply = client.post(
        f"/{SERVICE}/{method}", content=request.SerializeToString(), headers=headers
    )
    if reply.status_code == 200:
        assert reply.headers["content-type"] == "application/proto"
        return response_type.FromString(reply.content)
    assert reply.headers.get("content-type") == "application/json", reply.status_code
    body = json.loads(reply.content)
    from_details = None
    for detail in body.get("details", []):
        if detail["type"] == "pakr.v1.ErrorDetail":
            from_details = _refusal(detail["value"])
    raise WebError(
        body["code"],
        body.get("message", ""),
        _refusal(reply.headers.get(f"trailer-{wire.ERROR_METADATA_KEY}")),
        from_details,
        reply.headers,
    )


def _frames(body: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        frames.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return frames


def grpc_web_call(
    client: httpx.Client,
    method: str,
    request: Any,
    response_type: Any,
    *,
    token: str | None = None,
    origin: str | None = None,
) -> Any:
    """One gRPC-Web call: POST /pakr.v1.Node/<method>, Content-Type
    application/grpc-web+proto, body = 0x00 ‖ uint32 BE length ‖ message; the answer is data
    frames (flag 0x00) then one trailer frame (flag 0x80) of ``key: value\\r\\n`` lines."""
    message = request.SerializeToString()
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if origin is not None:
        headers["origin"] = origin
    body = struct.pack(">BI", 0, len(message)) + message
    reply = client.post(f"/{SERVICE}/{method}", content=body, headers=headers)
    assert reply.status_code == 200, reply.status_code
    data = [payload for flags, payload in _frames(reply.content) if not flags & 0x80]
    trailers: dict[str, str] = {}
    for flags, payload in _frames(reply.content):
        if flags & 0x80:
            for line in payload.decode("ascii").split("\r\n"):
                if line:
                    key, _, value = line.partition(":")
                    trailers[key.strip().lower()] = value.strip()
    status = trailers.get("grpc-status", reply.headers.get("grpc-status"))
    if status == "0":
        assert len(data) == 1
        return response_type.FromString(data[0])
    raise WebError(
        status or "?",
        trailers.get("grpc-message", ""),
        _refusal(trailers.get(wire.ERROR_METADATA_KEY)),
        None,
        reply.headers,
    )
