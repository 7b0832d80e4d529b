"""In-process fake nodes behind the SDK's transport seam (no network, no processes).

``FakeNode`` is a node made of the pure node-side protocol steps over a dict, with the
node's token checks (``verify_token`` against its own id, ``sub``/tenant matching), so the SDK
is exercised end to end except for gRPC. ``FakeTransport`` adds the failure knobs the tests
need: a node that is down, slow, fails transiently N times, refuses with a given kind, or
rewrites its replies (a malicious node).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pakr.async_client import AsyncClient
from pakr.proto.counting import (
    Admission,
    Recover3Outcome,
    admit_recover2,
    count_guess,
    node_recover2,
    node_recover3,
)
from pakr.proto.delete import node_delete
from pakr.proto.errors import ErrorKind, InvalidAuth, NodeRefusal
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.manifest import Manifest, ManifestNode, new_manifest
from pakr.proto.messages import (
    Delete,
    NodeRef,
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    Register2,
    Register3,
    UserRef,
    UserStatus,
)
from pakr.proto.records import UserRecord
from pakr.proto.register import node_register2, node_register3
from pakr.proto.tokens import TenantKey, verify_token
from pakr.tokens import DevTokenProvider
from pakr.transport import NodeUnreachable

TENANT = "acme"


class FakeNode:
    """One node's state and the node-side steps, like the real servicer minus gRPC/SQL."""

    def __init__(self, ref: NodeRef, tenant_key: TenantKey) -> None:
        self.ref = ref
        self.keys = {tenant_key.kid: tenant_key.public_key}
        self.users: dict[UserRef, UserRecord] = {}
        self.now = 1_000_000.0
        self.seen_jti: set[str] = set()

    def authorize(self, user: UserRef, token: str, *, replay_checked: bool) -> None:
        try:
            claims = verify_token(
                token, keys=self.keys, audience=self.ref.node_id.hex(), now=_now()
            )
        except InvalidAuth as exc:
            raise NodeRefusal(ErrorKind.INVALID_AUTH, str(exc)) from None
        if claims.user_id != user.user_id or claims.tenant != user.tenant:
            raise NodeRefusal(ErrorKind.INVALID_AUTH, "token is for another user")
        if replay_checked:
            if claims.jti in self.seen_jti:
                raise NodeRefusal(ErrorKind.INVALID_AUTH, "token replayed")
            self.seen_jti.add(claims.jti)

    def _record(self, user: UserRef) -> UserRecord | None:
        record = self.users.get(user)
        if record is None:
            return None
        for version in (record.committed, record.pending):
            if version is not None and version.lockout_due(self.now):
                record = record.with_version(version.locked_out())
        self.users[user] = record
        return record

    def status(self, user: UserRef) -> UserStatus:
        record = self._record(user)
        return record.status() if record else UserStatus()

    def register2(self, user: UserRef, request: Register2) -> None:
        new = node_register2(self._record(user), request, user=user, node=self.ref, now=self.now)
        if new is not None:
            self.users[user] = new

    def register3(self, user: UserRef, request: Register3) -> None:
        new = node_register3(self._record(user), request.version)
        if new is not None:
            self.users[user] = new

    def recover2(self, user: UserRef, request: Recover2) -> Recover2Reply:
        state = self._record(user)
        record = state.version(request.version) if state else None
        if state is None or record is None:
            raise NodeRefusal(ErrorKind.NOT_REGISTERED, "no such version")
        admission = admit_recover2(record, request, self.now)
        if admission is Admission.LOCKED:
            self.users[user] = state.with_version(record.locked_out())
            raise NodeRefusal(ErrorKind.LOCKED, "locked out", guesses_remaining=0)
        if admission is Admission.NO_GUESSES:
            raise NodeRefusal(ErrorKind.NO_GUESSES, "no guesses left", guesses_remaining=0)
        if admission is Admission.COUNT:
            record = count_guess(record, request, os.urandom(16), self.now)
            self.users[user] = state.with_version(record)
        assert record.attempt is not None
        return node_recover2(record, request, nonce=record.attempt.nonce)

    def recover3(self, user: UserRef, request: Recover3) -> Recover3Reply:
        state = self._record(user)
        record = state.version(request.version) if state else None
        if state is None or record is None:
            raise NodeRefusal(ErrorKind.NOT_REGISTERED, "no such version")
        after, reply, outcome = node_recover3(record, request, self.now)
        self.users[user] = state.with_version(after)
        if outcome is Recover3Outcome.STALE:
            raise NodeRefusal(ErrorKind.STALE_ATTEMPT, "not the latest attempt")
        if outcome is Recover3Outcome.MISMATCH or reply is None:
            raise NodeRefusal(ErrorKind.BAD_UNLOCK_TAG, "unlock proof mismatch")
        return reply

    def delete(self, user: UserRef, request: Delete) -> None:
        new = node_delete(self._record(user), request.epoch)
        if new is not None:
            self.users[user] = new


def _now() -> float:
    import time

    return time.time()


Rewrite = Callable[[str, Any], Any]


@dataclass
class Knobs:
    """How a fake transport misbehaves; all off by default."""

    down: bool = False
    delay: float = 0.0
    transient_failures: Counter[str] = field(default_factory=Counter)  # rpc -> failures left
    refuse: dict[str, NodeRefusal] = field(default_factory=dict)  # rpc -> refusal (always)
    rewrite: Rewrite | None = None  # (rpc, reply) -> reply


class FakeTransport:
    """The SDK's transport seam over a :class:`FakeNode`, with failure knobs and call counts."""

    def __init__(self, node: FakeNode) -> None:
        self._node = node
        self.knobs = Knobs()
        self.calls: Counter[str] = Counter()
        self.closed = False

    @property
    def node(self) -> NodeRef:
        return self._node.ref

    @property
    def fake(self) -> FakeNode:
        return self._node

    async def _enter(self, rpc: str, timeout: float) -> None:
        self.calls[rpc] += 1
        await asyncio.sleep(0)
        if self.knobs.down:
            raise NodeUnreachable("unavailable: connection refused")
        if self.knobs.delay:
            if self.knobs.delay >= timeout:
                await asyncio.sleep(timeout)
                raise NodeUnreachable("deadline exceeded")
            await asyncio.sleep(self.knobs.delay)
        if self.knobs.transient_failures[rpc] > 0:
            self.knobs.transient_failures[rpc] -= 1
            raise NodeUnreachable("unavailable: try again")
        if rpc in self.knobs.refuse:
            raise self.knobs.refuse[rpc]

    def _out(self, rpc: str, reply: Any) -> Any:
        return self.knobs.rewrite(rpc, reply) if self.knobs.rewrite else reply

    async def register1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        await self._enter("register1", timeout)
        self._node.authorize(user, token, replay_checked=False)
        return self._out("register1", self._node.status(user))  # type: ignore[no-any-return]

    async def register2(
        self, user: UserRef, token: str, request: Register2, *, timeout: float
    ) -> None:
        await self._enter("register2", timeout)
        self._node.authorize(user, token, replay_checked=True)
        self._node.register2(user, request)

    async def register3(
        self, user: UserRef, token: str, request: Register3, *, timeout: float
    ) -> None:
        await self._enter("register3", timeout)
        self._node.authorize(user, token, replay_checked=True)
        self._node.register3(user, request)

    async def recover1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        await self._enter("recover1", timeout)
        self._node.authorize(user, token, replay_checked=False)
        return self._out("recover1", self._node.status(user))  # type: ignore[no-any-return]

    async def recover2(
        self, user: UserRef, token: str, request: Recover2, *, timeout: float
    ) -> Recover2Reply:
        await self._enter("recover2", timeout)
        self._node.authorize(user, token, replay_checked=False)
        return self._out("recover2", self._node.recover2(user, request))  # type: ignore[no-any-return]

    async def recover3(
        self, user: UserRef, token: str, request: Recover3, *, timeout: float
    ) -> Recover3Reply:
        await self._enter("recover3", timeout)
        self._node.authorize(user, token, replay_checked=False)
        return self._out("recover3", self._node.recover3(user, request))  # type: ignore[no-any-return]

    async def delete(self, user: UserRef, token: str, request: Delete, *, timeout: float) -> None:
        await self._enter("delete", timeout)
        self._node.authorize(user, token, replay_checked=True)
        self._node.delete(user, request)

    async def close(self) -> None:
        self.closed = True


class FakeCluster:
    """n fake nodes, a dev manifest for them and a tenant key; builds SDK clients."""

    def __init__(self, n: int, t: int, *, r: int | None = None) -> None:
        self.key = TenantKey.generate(TENANT)
        nodes = [
            ManifestNode(
                node_id=os.urandom(16),
                index=i + 1,
                address=f"127.0.0.1:{40000 + i}",
                hpke_public_key=HpkePrivateKey.from_seed(os.urandom(32)).public,
            )
            for i in range(n)
        ]
        self.manifest: Manifest = new_manifest(
            cluster_id="fake",
            nodes=nodes,
            threshold=t,
            register_threshold=r,
            argon2=DEV_ARGON2,
            dev=True,
        )
        self.nodes = [FakeNode(node.ref, self.key) for node in nodes]
        self.transports = [FakeTransport(node) for node in self.nodes]
        self._by_id = {t.node.node_id: t for t in self.transports}

    def factory(self, node: ManifestNode, manifest: Manifest) -> FakeTransport:
        return self._by_id[node.node_id]

    def provider(self) -> DevTokenProvider:
        return DevTokenProvider(self.key)

    def client(self, **kwargs: Any) -> AsyncClient:
        kwargs.setdefault("token_provider", self.provider())
        kwargs.setdefault("deadline", 2.0)
        return AsyncClient(self.manifest, tenant=TENANT, transport_factory=self.factory, **kwargs)

    def user(self, user_id: str) -> UserRef:
        return UserRef(TENANT, user_id)

    def advance(self, seconds: float) -> None:
        for node in self.nodes:
            node.now += seconds
