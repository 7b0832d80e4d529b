"""The cluster as one operation sees it: nodes, thresholds, transports, tokens, deadlines.

:class:`ClusterContext` is what every ``pakr._operations`` module receives. It owns the
per-node transports and the token provider, and runs a protocol step at a set of nodes through
:func:`pakr._fanout.fan_out`, fetching a fresh token for the node on every attempt (nodes keep a
``jti`` replay cache, so a retried Register2/3 or Delete needs a new one).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from pakr._distrust import Distrust
from pakr._fanout import NO_RETRY, InFlight, RetryPolicy, StepResult, fan_out, hedged
from pakr._tokens import TokenCache, TokenProvider, fetch_token
from pakr._transport import NodeTransport
from pakr.proto.errors import ErrorKind, InvalidAuth, NodeRefusal, PakrError
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import NodeRef, UserRef
from pakr.proto.randomness import SYSTEM, Randomness

T = TypeVar("T")

PhaseObserver = Callable[[str, float], None]
"""Instrumentation hook: ``(phase, seconds)`` after each phase ("argon2", "recover1", ...)."""

NodeStep = Callable[[NodeTransport, str, float], Awaitable[T]]
"""``(transport, token, timeout) -> reply``: one RPC at one node."""


@dataclass(slots=True)
class ClusterContext:
    """Everything an operation needs to talk to the cluster (cached tokens stay out of repr)."""

    tenant: str
    nodes: tuple[NodeRef, ...]
    threshold: int
    register_threshold: int
    argon2: Argon2Params
    transports: Mapping[NodeRef, NodeTransport]
    token_provider: TokenProvider = field(repr=False)
    deadline: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    linger: float = 0.05
    rng: Randomness = field(default=SYSTEM, repr=False)
    observer: PhaseObserver | None = field(default=None, repr=False)
    tokens: TokenCache = field(default_factory=TokenCache, repr=False)
    distrust: Distrust = field(default_factory=Distrust, repr=False)
    """Nodes this client set aside recently: recovery asks them last (shared by copies)."""

    @property
    def node_count(self) -> int:
        """n, the number of nodes in the manifest."""
        return len(self.nodes)

    async def token(self, user: UserRef, node: NodeRef, *, fresh: bool = True) -> str:
        """A token for ``user`` at ``node`` (audience = the node id in hex).

        ``fresh=False`` allows a cached one (for RPCs nodes do not replay-check).
        """
        audience = node.node_id.hex()
        if not fresh:
            cached = self.tokens.get(user.user_id, audience)
            if cached is not None:
                return cached
        try:
            token = await fetch_token(self.token_provider, user.user_id, audience)
        except PakrError:
            raise
        except Exception as exc:  # the application's provider failed: report, don't crash
            raise InvalidAuth(
                f"the token provider failed for {node.name}: {type(exc).__name__}"
            ) from exc
        self.tokens.put(user.user_id, audience, token)
        return token

    async def step(
        self,
        name: str,
        user: UserRef,
        nodes: Sequence[NodeRef],
        rpc: NodeStep[T],
        *,
        need: int,
        retry: bool = True,
        wait_all: bool = False,
        fresh_token: bool = False,
    ) -> StepResult[T]:
        """Run one RPC at ``nodes`` in parallel until ``need`` answered (see ``fan_out``).

        ``retry=False`` for Recover2/Recover3: a retry could spend a guess the caller did not
        ask for, so those are never repeated automatically. ``fresh_token=True`` for the RPCs
        nodes replay-check (Register2/3, Delete): a new token for every attempt.
        """
        with self.phase(name):
            return await fan_out(
                name,
                nodes,
                self._node_call(user, rpc, fresh_token=fresh_token),
                need=need,
                deadline=self.deadline,
                retry=self.retry if retry else NO_RETRY,
                linger=self.linger,
                wait_all=wait_all,
            )

    def start(
        self, name: str, user: UserRef, nodes: Sequence[NodeRef], rpc: NodeStep[T]
    ) -> InFlight[T]:
        """Start a (retried) step at ``nodes`` and return it in flight, for an operation
        that acts on part of the answers while the others arrive (Recover1)."""
        flight: InFlight[T] = InFlight(
            name,
            self._node_call(user, rpc, fresh_token=False),
            deadline=self.deadline,
            retry=self.retry,
        )
        for node in nodes:
            flight.launch(node)
        return flight

    async def hedged_step(
        self,
        name: str,
        user: UserRef,
        candidates: Sequence[NodeRef],
        rpc: NodeStep[T],
        *,
        need: int,
        hedge_after: float,
    ) -> StepResult[T]:
        """A guess-spending step (never retried) at the first ``need`` of ``candidates``,
        bringing in the next ones for failures and stragglers (see :func:`fanout.hedged`)."""
        with self.phase(name):
            return await hedged(
                name,
                candidates,
                self._node_call(user, rpc, fresh_token=False),
                need=need,
                deadline=self.deadline,
                hedge_after=hedge_after,
            )

    def _node_call(
        self, user: UserRef, rpc: NodeStep[T], *, fresh_token: bool
    ) -> Callable[[NodeRef, float], Awaitable[T]]:
        """One attempt of ``rpc`` at a node: fetch its token, call, forget a refused token."""

        async def call(node: NodeRef, timeout: float) -> T:
            token = await self.token(user, node, fresh=fresh_token)
            try:
                return await rpc(self.transports[node], token, timeout)
            except NodeRefusal as refusal:
                if refusal.kind is ErrorKind.INVALID_AUTH:
                    self.tokens.forget(user.user_id, node.node_id.hex())
                raise

        return call

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase for the observer (if any)."""
        if self.observer is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observer(name, time.perf_counter() - start)
