"""How the SDK talks to one node: the :class:`NodeTransport` seam and its gRPC implementation.

Everything above this module speaks protocol dataclasses (``pakr.proto.messages``); only
:class:`GrpcTransport` knows about protobuf, channels, TLS and metadata. Tests replace it with
an in-process fake that runs the pure node steps, and wrap it to make one node misbehave.

A node's answer is either a reply, a :class:`~pakr.proto.errors.NodeRefusal` (the node said no,
with a typed :class:`~pakr.proto.errors.ErrorKind` from the ``pakr-error-bin`` trailer), a
:class:`~pakr.proto.errors.NodeUnreachable` (no answer: connection refused, deadline,
draining) or a :class:`~pakr.proto.errors.MalformedMessage` (the node answered garbage, which
the caller treats as misbehaviour).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import grpc
from grpc import aio

from pakr.proto import wire
from pakr.proto.channel import pinned_aio_channel, refusal_from_trailers
from pakr.proto.errors import (
    ConfigError,
    ErrorKind,
    NodeRefusal,
    NodeUnreachable,
    PakrError,
)
from pakr.proto.hostport import split_host_port
from pakr.proto.hpke import HpkePublicKey
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
from pakr.proto.v1 import node_pb2_grpc as pb_grpc

_T = TypeVar("_T")


class NodeTransport(Protocol):
    """One node's RPCs as the protocol sees them (the SDK's test seam).

    ``token`` is the access token for this call (minted for this node). ``timeout`` is the
    call's deadline in seconds. Methods raise :class:`NodeRefusal`, :class:`NodeUnreachable`
    or :class:`MalformedMessage`; nothing else.
    """

    @property
    def node(self) -> NodeRef:
        """The node this transport reaches."""
        ...

    async def register1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        """Register1: the node's state for the user, before a registration or delete."""
        ...

    async def register2(
        self, user: UserRef, token: str, request: Register2, *, timeout: float
    ) -> None:
        """Register2: store the node's share of a new registration as pending."""
        ...

    async def register3(
        self, user: UserRef, token: str, request: Register3, *, timeout: float
    ) -> None:
        """Register3: commit the pending version."""
        ...

    async def recover1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        """Recover1: the node's state for the user, before a recovery."""
        ...

    async def recover2(
        self, user: UserRef, token: str, request: Recover2, *, timeout: float
    ) -> Recover2Reply:
        """Recover2: a counted OPRF evaluation."""
        ...

    async def recover3(
        self, user: UserRef, token: str, request: Recover3, *, timeout: float
    ) -> Recover3Reply:
        """Recover3: the secret share against the unlock proof."""
        ...

    async def reset_guesses(
        self, user: UserRef, token: str, request: ResetGuesses, *, timeout: float
    ) -> None:
        """ResetGuesses: reset a non-releasing holder's count (proof over its nonce)."""
        ...

    async def delete(self, user: UserRef, token: str, request: Delete, *, timeout: float) -> None:
        """Delete: tombstone every version of the user."""
        ...

    async def read_audit(
        self, user: UserRef, token: str, *, after_id: int, limit: int, timeout: float
    ) -> tuple[AuditRow, ...]:
        """ReadAudit: the tenant's (``user.user_id`` empty) or one user's audit rows."""
        ...

    async def close(self) -> None:
        """Release connections; the transport is not used afterwards."""
        ...


# gRPC status codes that mean "no answer yet, maybe later" (retried where allowed).
_TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
    }
)


def refusal_from_rpc_error(error: aio.AioRpcError) -> PakrError:
    """A node's gRPC error as a typed :class:`NodeRefusal` or :class:`NodeUnreachable`.

    The ``pakr-error-bin`` trailer decides when present (the SDK relies on the kind, never
    on the status code); without it the status code only tells reachable from not.
    """
    refusal = refusal_from_trailers(error)
    if refusal is not None:
        return refusal
    code = error.code()
    details = (error.details() or "").strip()[:200]
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return NodeRefusal(ErrorKind.UPGRADE_REQUIRED, "the node does not implement this RPC")
    if code in _TRANSIENT_CODES:
        name = code.name.lower() if code is not None else "error"
        return NodeUnreachable(f"{name}: {details}" if details else name)
    name = code.name.lower() if code is not None else "error"
    return NodeUnreachable(f"{name}: {details}" if details else name, transient=False)


def fetch_pinned_certificate(address: str, sha256: bytes, timeout: float) -> bytes:
    """Fetch a node's TLS certificate and return its PEM if its SHA-256 matches the pin.

    For manifests that carry only the certificate's hash: the certificate is then used as
    the only trust root of the channel, so a different certificate fails the handshake.
    """
    host, port = split_host_port(address, "node address", listen=False)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        import socket

        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise NodeUnreachable(f"cannot fetch the TLS certificate: {exc}") from None
    if der is None or hashlib.sha256(der).digest() != sha256:
        raise NodeUnreachable(
            "the node's TLS certificate does not match the manifest's pin", transient=False
        )
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")


class GrpcTransport:
    """A node over a grpc.aio channel, TLS pinned to the certificate the manifest names.

    The channel is opened on first use (inside the event loop that will use it) and reused for
    every later call; :meth:`close` closes it. ``insecure`` (plaintext) is only for dev
    manifests whose nodes run with ``--insecure``.
    """

    def __init__(
        self,
        node: NodeRef,
        address: str,
        *,
        tls_cert_pem: str | None = None,
        tls_cert_sha256: bytes | None = None,
        insecure: bool = False,
        hpke_public_key: HpkePublicKey | None = None,
    ) -> None:
        if tls_cert_pem is None and tls_cert_sha256 is None and not insecure:
            raise ConfigError(
                f"{node.name} has no TLS certificate or certificate hash in the manifest;"
                " plaintext is only allowed for dev manifests"
            )
        split_host_port(address, "node address", listen=False)
        self._node = node
        self._address = address
        self._pem = tls_cert_pem.encode("ascii") if tls_cert_pem else None
        self._sha256 = tls_cert_sha256
        self._insecure = insecure and tls_cert_pem is None and tls_cert_sha256 is None
        self._hpke_public_key = hpke_public_key
        self._channel: aio.Channel | None = None
        self._stub: pb_grpc.NodeAsyncStub | None = None
        self._lock = asyncio.Lock()
        self._reconnect = False

    @property
    def node(self) -> NodeRef:
        """The node this transport reaches."""
        return self._node

    def __repr__(self) -> str:
        return f"GrpcTransport({self._node.name}, {self._address!r})"

    async def _get_stub(self, timeout: float) -> pb_grpc.NodeAsyncStub:
        if self._stub is not None and not self._reconnect:
            return self._stub
        async with self._lock:
            if self._reconnect:
                # The node was unreachable: a fresh channel connects at once, instead of
                # waiting out the old one's reconnect backoff after the node came back.
                self._reconnect = False
                old, self._channel, self._stub = self._channel, None, None
                if old is not None:
                    await old.close()
            if self._stub is None:
                pem = self._pem
                if pem is None and not self._insecure:
                    assert self._sha256 is not None
                    pem = await asyncio.to_thread(
                        fetch_pinned_certificate, self._address, self._sha256, timeout
                    )
                    self._pem = pem
                channel = pinned_aio_channel(self._address, pem)
                self._channel = channel
                self._stub = pb_grpc.NodeStub(channel)
        assert self._stub is not None
        return self._stub

    async def _call(
        self,
        token: str,
        timeout: float,
        invoke: Callable[[pb_grpc.NodeAsyncStub, tuple[tuple[str, str], ...]], Awaitable[_T]],
    ) -> _T:
        stub = await self._get_stub(timeout)
        metadata = (("authorization", f"Bearer {token}"),)
        try:
            return await invoke(stub, metadata)  # gRPC enforces ``timeout`` itself
        except aio.AioRpcError as exc:
            error = refusal_from_rpc_error(exc)
            if exc.code() == grpc.StatusCode.UNAVAILABLE and isinstance(error, NodeUnreachable):
                self._reconnect = True
            raise error from None

    @staticmethod
    def _header(user: UserRef) -> pb.RequestHeader:
        return wire.header_to_pb(os.urandom(REQUEST_ID_LEN), user)

    async def register1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        """Register1 over gRPC."""
        msg = pb.Register1Request(header=self._header(user))
        reply = await self._call(
            token, timeout, lambda s, md: s.Register1(msg, timeout=timeout, metadata=md)
        )
        return wire.status_from_pb(reply.status)

    async def register2(
        self, user: UserRef, token: str, request: Register2, *, timeout: float
    ) -> None:
        """Register2 over gRPC, its shares sealed to the node's manifest HPKE key."""
        if self._hpke_public_key is None:
            raise ConfigError(
                f"the manifest lists no HPKE key for {self._node.name}: only nodes of the"
                " current configuration take registrations"
            )
        msg = wire.register2_to_pb(
            self._header(user),
            request,
            node_id=self._node.node_id,
            node_key=self._hpke_public_key,
        )
        await self._call(
            token, timeout, lambda s, md: s.Register2(msg, timeout=timeout, metadata=md)
        )

    async def register3(
        self, user: UserRef, token: str, request: Register3, *, timeout: float
    ) -> None:
        """Register3 over gRPC."""
        msg = pb.Register3Request(header=self._header(user), version=request.version)
        await self._call(
            token, timeout, lambda s, md: s.Register3(msg, timeout=timeout, metadata=md)
        )

    async def recover1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        """Recover1 over gRPC."""
        msg = pb.Recover1Request(header=self._header(user))
        reply = await self._call(
            token, timeout, lambda s, md: s.Recover1(msg, timeout=timeout, metadata=md)
        )
        return wire.recover1_status_from_pb(reply)

    async def recover2(
        self, user: UserRef, token: str, request: Recover2, *, timeout: float
    ) -> Recover2Reply:
        """Recover2 over gRPC."""
        msg = wire.recover2_to_pb(self._header(user), request)
        reply = await self._call(
            token, timeout, lambda s, md: s.Recover2(msg, timeout=timeout, metadata=md)
        )
        return wire.recover2_reply_from_pb(reply)

    async def recover3(
        self, user: UserRef, token: str, request: Recover3, *, timeout: float
    ) -> Recover3Reply:
        """Recover3 over gRPC."""
        msg = wire.recover3_to_pb(self._header(user), request)
        reply = await self._call(
            token, timeout, lambda s, md: s.Recover3(msg, timeout=timeout, metadata=md)
        )
        return wire.recover3_reply_from_pb(
            reply, user=user, node_id=self._node.node_id, request=request
        )

    async def reset_guesses(
        self, user: UserRef, token: str, request: ResetGuesses, *, timeout: float
    ) -> None:
        """ResetGuesses over gRPC."""
        msg = wire.reset_to_pb(self._header(user), request)
        await self._call(
            token, timeout, lambda s, md: s.ResetGuesses(msg, timeout=timeout, metadata=md)
        )

    async def list_versions(
        self, tenant: str, token: str, *, after_user_id: str, limit: int, timeout: float
    ) -> list[tuple[str, UserStatus]]:
        """ListVersions over gRPC (operator, scope ``audit``): a page of the tenant's users
        with their version metadata."""
        msg = pb.ListVersionsRequest(
            header=wire.header_to_pb(os.urandom(REQUEST_ID_LEN), UserRef(tenant, "")),
            after_user_id=after_user_id,
            limit=limit,
        )
        reply = await self._call(
            token, timeout, lambda s, md: s.ListVersions(msg, timeout=timeout, metadata=md)
        )
        return [(u.user_id, wire.status_from_pb(u.status)) for u in reply.users]

    async def delete(self, user: UserRef, token: str, request: Delete, *, timeout: float) -> None:
        """Delete over gRPC."""
        msg = pb.DeleteRequest(header=self._header(user), epoch=request.epoch)
        await self._call(token, timeout, lambda s, md: s.Delete(msg, timeout=timeout, metadata=md))

    async def read_audit(
        self, user: UserRef, token: str, *, after_id: int, limit: int, timeout: float
    ) -> tuple[AuditRow, ...]:
        """ReadAudit over gRPC."""
        msg = pb.ReadAuditRequest(header=self._header(user), after_id=after_id, limit=limit)
        reply = await self._call(
            token, timeout, lambda s, md: s.ReadAudit(msg, timeout=timeout, metadata=md)
        )
        return wire.audit_rows_from_pb(reply)

    async def close(self) -> None:
        """Close the channel (a later call would open a new one)."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()


TransportFactory = Callable[[ManifestNode, Manifest], NodeTransport]
"""Builds the transport for one manifest node (default: :func:`grpc_transport`)."""


def grpc_transport(node: ManifestNode, manifest: Manifest) -> NodeTransport:
    """The default transport: gRPC over TLS pinned to the manifest's certificate."""
    return GrpcTransport(
        node.ref,
        node.address,
        tls_cert_pem=node.tls_cert_pem,
        tls_cert_sha256=node.tls_cert_sha256,
        insecure=manifest.dev and node.insecure,
        hpke_public_key=node.hpke_public_key,
    )
