"""``pakr.AsyncClient``: the SDK's one implementation, on asyncio.

Each method runs one operation from :mod:`pakr._operations` against the cluster described by a
signed manifest. Transports (one per node, reused across calls) are created from the manifest
by a factory, which tests replace to run in-process fake nodes or to make one node misbehave.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from types import TracebackType

from pakr._audit import AuditPage, read_audit
from pakr._cluster import ClusterContext, PhaseObserver
from pakr._fanout import RetryPolicy
from pakr._from_manifest import FromManifest
from pakr._operations.change_password import change_password
from pakr._operations.delete import delete
from pakr._operations.migrate import recover_or_migrate
from pakr._operations.register import IfExists, Registration, register
from pakr._operations.status import StatusReport, status
from pakr._passwords import Password, check_secret, check_user, password_bytes
from pakr._tokens import DevTokenProvider, TokenProvider
from pakr._transport import NodeTransport, TransportFactory, grpc_transport
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import Manifest, ManifestNode
from pakr.proto.messages import DEFAULT_MAX_GUESSES, NodeRef, UserRef
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.tokens import check_tenant_name


def _all_nodes(manifest: Manifest) -> Iterator[ManifestNode]:
    """The current nodes, then those of the previous configurations."""
    yield from manifest.nodes
    for node_set in manifest.previous_configurations:
        yield from node_set.nodes


class AsyncClient(FromManifest):
    """Register, recover, change and delete a user's secret on a pakr cluster (asyncio).

    Use as ``async with AsyncClient.from_manifest(...) as client:`` or call :meth:`close`.
    ``manifest`` is a verified manifest (``from_manifest`` verifies one). ``token_provider``
    is ``(user_id, audience) -> token``, sync or async. ``deadline`` bounds each protocol
    step (seconds, per round of RPCs); ``retry`` is the backoff of the idempotent steps;
    ``transport_factory`` builds each node's transport (tests pass ``pakr.testing``'s);
    ``rng`` is the randomness source (seeded only in tests); ``on_phase(name, seconds)``
    observes each phase for metrics. Passwords are ``str`` (normalised to NFKC, then UTF-8)
    or ``bytes`` (used as is); secrets are 0..128 bytes.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        tenant: str,
        token_provider: TokenProvider,
        deadline: float = 5.0,
        retry: RetryPolicy | None = None,
        transport_factory: TransportFactory = grpc_transport,
        rng: Randomness = SYSTEM,
        on_phase: PhaseObserver | None = None,
    ) -> None:
        if not callable(token_provider):
            raise ConfigError("token_provider must be a callable (user_id, audience) -> token")
        if not deadline > 0:
            raise ConfigError("deadline must be a positive number of seconds")
        check_tenant_name(tenant)
        self._manifest = manifest
        transports: dict[NodeRef, NodeTransport] = {}
        for node in _all_nodes(manifest):
            if node.ref not in transports:
                transports[node.ref] = transport_factory(node, manifest)
        self._ctx = ClusterContext(
            tenant=tenant,
            nodes=manifest.node_refs,
            threshold=manifest.threshold,
            register_threshold=manifest.register_threshold,
            argon2=manifest.argon2,
            transports=transports,
            token_provider=token_provider,
            deadline=deadline,
            retry=retry or RetryPolicy(),
            rng=rng,
            observer=on_phase,
        )
        self._previous = tuple(
            replace(
                self._ctx,
                nodes=tuple(node.ref for node in node_set.nodes),
                threshold=node_set.threshold,
                register_threshold=len(node_set.nodes),
            )
            for node_set in manifest.previous_configurations
        )
        self._closed = False
        # One operation at a time per user (see _one_at_a_time): lock and its waiter count.
        self._user_locks: dict[UserRef, tuple[asyncio.Lock, list[int]]] = {}

    @property
    def manifest(self) -> Manifest:
        """The verified manifest this client uses."""
        return self._manifest

    @property
    def tenant(self) -> str:
        """The tenant (application) every user of this client belongs to."""
        return self._ctx.tenant

    def transport(self, node_id: bytes) -> NodeTransport:
        """The transport of one node (for diagnostics and tests)."""
        return self._ctx.transports[self._manifest.node(node_id).ref]

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("this client is closed; create a new one")

    @asynccontextmanager
    async def _one_at_a_time(self, user: UserRef) -> AsyncIterator[None]:
        """Serialise this client's state-changing operations on one user.

        A node keeps one open recovery attempt per user, so two recoveries of the same user
        running side by side would replace each other's attempt (one would fail, its guess
        spent). Calls for different users still run concurrently.
        """
        lock, waiters = self._user_locks.setdefault(user, (asyncio.Lock(), [0]))
        waiters[0] += 1
        try:
            async with lock:
                yield
        finally:
            waiters[0] -= 1
            if waiters[0] == 0:
                del self._user_locks[user]

    async def register(
        self,
        user_id: str,
        password: Password,
        secret: bytes,
        *,
        max_guesses: int = DEFAULT_MAX_GUESSES,
        if_exists: IfExists = "refuse",
    ) -> Registration:
        """Store ``secret`` (0..128 bytes) for ``user_id`` under ``password``.

        A user who is already registered (by the rule recovery uses: a version held by t
        nodes, even locked out) is refused with ``AlreadyRegistered`` unless
        ``if_exists="replace"``; then the earlier registration is replaced once the new one
        is committed, and the result's ``replaced`` names it. ``max_guesses`` (1..100) wrong
        guesses lock the secret out for good. Raises ``ClusterUnavailable`` (no node
        acknowledged storing it), ``CommitIncomplete`` (stored on some nodes: call again),
        ``InvalidAuth``, ``ConfigError``.
        """
        self._check_open()
        user = check_user(self.tenant, user_id)
        async with self._one_at_a_time(user):
            return await register(
                self._ctx,
                user,
                password_bytes(password),
                check_secret(secret),
                max_guesses=max_guesses,
                if_exists=if_exists,
            )

    async def recover(self, user_id: str, password: Password) -> bytes:
        """The secret registered for ``user_id``, if ``password`` is right.

        Every call spends one guess at each node it reaches (refunded on success: the nodes
        that release a share and, alongside, every other holder of the version). A node that
        answered without a copy of the version gets one (one re-registration, aborted if
        anything newer appears). Raises
        ``InvalidPassword`` (with ``guesses_remaining``), ``NotRegistered``,
        ``ClusterUnavailable``, ``ProtocolError`` (a node misbehaved; named),
        ``WeakParameters``, ``InvalidAuth``. A user the current nodes have never seen is
        looked for in the manifest's ``previous_configurations`` and migrated on success.
        """
        self._check_open()
        user = check_user(self.tenant, user_id)
        async with self._one_at_a_time(user):
            return await recover_or_migrate(
                self._ctx, self._previous, user, password_bytes(password)
            )

    async def change_password(
        self,
        user_id: str,
        old_password: Password,
        new_password: Password,
        *,
        max_guesses: int | None = None,
    ) -> None:
        """Recover with ``old_password`` and re-register under ``new_password``.

        The old password stays in force until the new registration is committed, so an
        interruption never loses the secret. Keeps the old guess limit unless given.
        """
        self._check_open()
        user = check_user(self.tenant, user_id)
        async with self._one_at_a_time(user):
            await change_password(
                self._ctx,
                user,
                password_bytes(old_password),
                password_bytes(new_password),
                max_guesses=max_guesses,
            )

    async def delete(self, user_id: str) -> None:
        """Delete ``user_id``'s secret everywhere (tombstones).

        Raises ``NotRegistered`` when no node holds a secret for the user (never registered,
        or already deleted): nothing to delete. A delete interrupted part-way can be called
        again; it finishes on the nodes that still hold the secret.
        """
        self._check_open()
        user = check_user(self.tenant, user_id)
        async with self._one_at_a_time(user):
            await delete(self._ctx, user)

    async def status(self, user_id: str) -> StatusReport:
        """Whether ``user_id`` is registered and each node's guesses left (spends nothing)."""
        self._check_open()
        return await status(self._ctx, check_user(self.tenant, user_id))

    async def audit(
        self,
        user_id: str | None = None,
        *,
        cursor: str | None = None,
        limit: int = 100,
        token_provider: TokenProvider | None = None,
    ) -> AuditPage:
        """A page of the nodes' audit logs: the whole tenant's, or ``user_id``'s.

        Events of every node, oldest first (see :mod:`pakr._audit` for the events); pass the
        page's ``cursor`` back for the next page. Needs audit-scope tokens: from
        ``token_provider`` (called with the user id, or ``"*"`` for the whole tenant, and the
        node id), by default this client's ``dev_token_provider`` switched to that scope.
        """
        self._check_open()
        if user_id is not None:
            check_user(self.tenant, user_id)
        provider = token_provider
        if provider is None:
            if not isinstance(self._ctx.token_provider, DevTokenProvider):
                raise ConfigError(
                    "audit needs audit-scope tokens: pass token_provider= (a provider minting"
                    ' tokens with scope "audit")'
                )
            provider = self._ctx.token_provider.with_scope("audit")
        return await read_audit(self._ctx, provider, user_id, cursor=cursor, limit=limit)

    async def close(self) -> None:
        """Close every node connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for transport in self._ctx.transports.values():  # current and previous nodes
            await transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    aclose = close

    def __repr__(self) -> str:
        m = self._manifest
        return (
            f"AsyncClient(cluster={m.cluster_id!r}, tenant={self.tenant!r},"
            f" t={m.threshold}, n={len(m.nodes)})"
        )
