"""The SDK's transport seam over a :class:`~pakr.testing.FakeNode`, with faults to inject.

A :class:`FakeTransport` is a :class:`pakr.NodeTransport`: the SDK calls it exactly as it calls
gRPC. :class:`Faults` says how it misbehaves (down, slow, failing a few times, refusing,
lying); everything is off by default. The lies rewrite a reply the way a malicious node
would, so the SDK's verification, not the fake, has to catch them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pakr.proto.errors import NodeRefusal, NodeUnreachable
from pakr.proto.group import Element, Scalar
from pakr.proto.messages import (
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
    VersionInfo,
)
from pakr.proto.tokens import DELETE_FRESHNESS_SECONDS, SCOPE_AUDIT

from ._node import FakeNode

Rpc = Literal[
    "register1",
    "register2",
    "register3",
    "recover1",
    "recover2",
    "recover3",
    "reset_guesses",
    "delete",
    "read_audit",
]

Rewrite = Callable[[str, Any], Any]
"""``(rpc, reply) -> reply``: a node that answers something else than it should."""

Lie = Literal["evaluation", "share", "guesses", "locked", "no-version"]
"""The named lies of :meth:`pakr.testing.FakeCluster.make_liar`:

* ``"evaluation"``: Recover2 returns a wrong OPRF evaluation (caught by its proof);
* ``"share"``: Recover3 returns a wrong secret share (caught by the share commitments);
* ``"guesses"``: Recover1 claims one guess left, so that recoveries ask this node first;
* ``"locked"``: Recover1 and Register1 claim the user's version is locked out;
* ``"no-version"``: Recover1 and Register1 claim the node holds no version of the user.
"""


def _claim(status: UserStatus, change: Callable[[VersionInfo], VersionInfo]) -> UserStatus:
    if status.committed is None:
        return status
    return replace(status, committed=change(status.committed))


def lie_rewrite(lie: Lie) -> Rewrite:
    """The :data:`Rewrite` that tells ``lie``."""

    def rewrite(rpc: str, reply: Any) -> Any:
        if lie == "evaluation" and isinstance(reply, Recover2Reply):
            return replace(reply, evaluated_element=reply.evaluated_element + Element.generator())
        if lie == "share" and isinstance(reply, Recover3Reply):
            return replace(reply, secret_share=reply.secret_share + Scalar.from_int(1))
        if isinstance(reply, UserStatus):
            if lie == "guesses" and rpc == "recover1":
                return _claim(reply, lambda info: replace(info, guesses_remaining=1))
            if lie == "locked":
                return _claim(reply, lambda info: replace(info, locked=True, guesses_remaining=0))
            if lie == "no-version":
                return replace(reply, committed=None, pending=None)
        return reply

    return rewrite


@dataclass
class Faults:
    """How one fake node misbehaves; all off by default (an honest, fast node)."""

    down: bool = False
    """Every call fails as a refused connection would."""
    delay: float = 0.0
    """Seconds every call takes (a call past its deadline fails as a timeout)."""
    transient_failures: Counter[str] = field(default_factory=Counter)
    """rpc -> how many more calls fail as "unavailable" before it answers again."""
    refuse: dict[str, NodeRefusal] = field(default_factory=dict)
    """rpc -> the refusal every call gets."""
    rewrite: Rewrite | None = None
    """Rewrites every reply (a lying node); see :data:`Lie` for the named ones."""


class FakeTransport:
    """A :class:`pakr.NodeTransport` that calls a :class:`FakeNode` in process.

    ``faults`` injects failures; ``calls`` counts the calls per RPC (including failed ones).
    """

    def __init__(self, node: FakeNode) -> None:
        self.fake = node
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self.closed = False

    @property
    def node(self) -> NodeRef:
        """The node this transport reaches."""
        return self.fake.ref

    def __repr__(self) -> str:
        return f"FakeTransport({self.fake.ref.name})"

    async def _enter(self, rpc: Rpc, timeout: float) -> None:
        self.calls[rpc] += 1
        await asyncio.sleep(0)  # a real call yields to the loop too
        faults = self.faults
        if faults.down:
            raise NodeUnreachable("unavailable: connection refused")
        if faults.delay:
            if faults.delay >= timeout:
                await asyncio.sleep(timeout)
                raise NodeUnreachable("deadline_exceeded: deadline exceeded")
            await asyncio.sleep(faults.delay)
        if faults.transient_failures[rpc] > 0:
            faults.transient_failures[rpc] -= 1
            raise NodeUnreachable("unavailable: try again")
        if rpc in faults.refuse:
            raise faults.refuse[rpc]

    def _out(self, rpc: Rpc, reply: Any) -> Any:
        return self.faults.rewrite(rpc, reply) if self.faults.rewrite else reply

    async def register1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        """Register1."""
        await self._enter("register1", timeout)
        self.fake.authorize(user, token)
        reply: UserStatus = self._out("register1", self.fake.status(user))
        return reply

    async def register2(
        self, user: UserRef, token: str, request: Register2, *, timeout: float
    ) -> None:
        """Register2."""
        await self._enter("register2", timeout)
        self.fake.authorize(user, token, single_use=True)
        self.fake.register2(user, request)

    async def register3(
        self, user: UserRef, token: str, request: Register3, *, timeout: float
    ) -> None:
        """Register3."""
        await self._enter("register3", timeout)
        self.fake.authorize(user, token, single_use=True)
        self.fake.register3(user, request.version)

    async def recover1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        """Recover1."""
        await self._enter("recover1", timeout)
        self.fake.authorize(user, token)
        reply: UserStatus = self._out("recover1", self.fake.status(user, reset_nonce=True))
        return reply

    async def recover2(
        self, user: UserRef, token: str, request: Recover2, *, timeout: float
    ) -> Recover2Reply:
        """Recover2."""
        await self._enter("recover2", timeout)
        self.fake.authorize(user, token)
        reply: Recover2Reply = self._out("recover2", self.fake.recover2(user, request))
        return reply

    async def recover3(
        self, user: UserRef, token: str, request: Recover3, *, timeout: float
    ) -> Recover3Reply:
        """Recover3."""
        await self._enter("recover3", timeout)
        self.fake.authorize(user, token)
        reply: Recover3Reply = self._out("recover3", self.fake.recover3(user, request))
        return reply

    async def reset_guesses(
        self, user: UserRef, token: str, request: ResetGuesses, *, timeout: float
    ) -> None:
        """ResetGuesses."""
        await self._enter("reset_guesses", timeout)
        self.fake.authorize(user, token)
        self.fake.reset_guesses(user, request)

    async def delete(self, user: UserRef, token: str, request: Delete, *, timeout: float) -> None:
        """Delete."""
        await self._enter("delete", timeout)
        self.fake.authorize(user, token, single_use=True, fresh_within=DELETE_FRESHNESS_SECONDS)
        self.fake.delete(user, request.epoch)

    async def read_audit(
        self, user: UserRef, token: str, *, after_id: int, limit: int, timeout: float
    ) -> tuple[AuditRow, ...]:
        """ReadAudit."""
        await self._enter("read_audit", timeout)
        self.fake.authorize(user, token, scope=SCOPE_AUDIT, any_user=True)
        return self.fake.read_audit(
            user.tenant, user.user_id or None, after_id=after_id, limit=limit
        )

    async def close(self) -> None:
        """Mark the transport closed (nothing to release)."""
        self.closed = True
