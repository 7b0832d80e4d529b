"""``pakr.AsyncClient``: the SDK's one implementation, on asyncio.

Each method runs one operation from :mod:`pakr.operations` against the cluster described by a
signed manifest. Transports (one per node, reused across calls) are created from the manifest
by a factory, which tests replace to run in-process fake nodes or to make one node misbehave.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

from pakr.cluster import ClusterContext, PhaseObserver
from pakr.fanout import RetryPolicy
from pakr.operations.change_password import change_password
from pakr.operations.delete import delete
from pakr.operations.migrate import recover_or_migrate
from pakr.operations.register import register
from pakr.operations.status import StatusReport, status
from pakr.passwords import Password, check_secret, check_user, password_bytes
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import Manifest, ManifestNode, OperatorPin
from pakr.proto.messages import DEFAULT_MAX_GUESSES, NodeRef
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.tokens import check_tenant_name
from pakr.tokens import TokenProvider
from pakr.transport import GrpcTransport, NodeTransport
from pakr.trust import SerialState, load_trusted_manifest

TransportFactory = Callable[[ManifestNode, Manifest], NodeTransport]
"""Builds the transport for one manifest node (default: :func:`grpc_transport`)."""

ManifestSource = str | os.PathLike[str] | Mapping[str, Any]


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


def _all_nodes(manifest: Manifest) -> Iterator[ManifestNode]:
    """The current nodes, then those of the previous configurations."""
    yield from manifest.nodes
    for node_set in manifest.previous_configurations:
        yield from node_set.nodes


class AsyncClient:
    """Register, recover, change and delete a user's secret on a pakr cluster (asyncio).

    Use as ``async with AsyncClient.from_manifest(...) as client:`` or call :meth:`close`.
    ``deadline`` bounds each protocol step (seconds, per round of RPCs). Passwords are ``str``
    (normalised to NFKC, then UTF-8) or ``bytes`` (used as is); secrets are 0..128 bytes.
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

    @classmethod
    def from_manifest(
        cls,
        source: ManifestSource,
        *,
        tenant: str,
        token_provider: TokenProvider,
        operator_key: OperatorPin | None = None,
        min_serial: int = 0,
        serial_state: str | os.PathLike[str] | SerialState | None = None,
        deadline: float = 5.0,
        **kwargs: Any,
    ) -> AsyncClient:
        """A client for the cluster in the signed manifest ``source`` (path or JSON dict).

        ``operator_key`` (``ed25519:...``, required) pins the operator who must have signed
        it; ``pakr.INSECURE_UNPINNED`` opts out (dev clusters only; warns). ``min_serial``
        and ``serial_state`` (a small JSON file holding the highest serial seen per operator
        key, updated here) refuse rollbacks to an older manifest than one already seen.
        """
        manifest = load_trusted_manifest(
            source, operator_key=operator_key, min_serial=min_serial, serial_state=serial_state
        )
        return cls(
            manifest, tenant=tenant, token_provider=token_provider, deadline=deadline, **kwargs
        )

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

    async def register(
        self,
        user_id: str,
        password: Password,
        secret: bytes,
        *,
        max_guesses: int = DEFAULT_MAX_GUESSES,
    ) -> None:
        """Store ``secret`` (0..128 bytes) for ``user_id`` under ``password``.

        Replaces any earlier registration once the new one is committed. ``max_guesses``
        (1..100) wrong guesses lock the secret out for good. Raises ``ClusterUnavailable``
        (no node acknowledged storing it), ``CommitIncomplete`` (stored on some nodes: it may
        or may not be in force; call again), ``InvalidAuth``, ``ConfigError``.
        """
        self._check_open()
        user = check_user(self.tenant, user_id)
        await register(
            self._ctx, user, password_bytes(password), check_secret(secret), max_guesses=max_guesses
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
        return await recover_or_migrate(self._ctx, self._previous, user, password_bytes(password))

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
        await change_password(
            self._ctx,
            user,
            password_bytes(old_password),
            password_bytes(new_password),
            max_guesses=max_guesses,
        )

    async def delete(self, user_id: str) -> None:
        """Delete ``user_id``'s secret everywhere (tombstones; idempotent)."""
        self._check_open()
        await delete(self._ctx, check_user(self.tenant, user_id))

    async def status(self, user_id: str) -> StatusReport:
        """Whether ``user_id`` is registered and each node's guesses left (spends nothing)."""
        self._check_open()
        return await status(self._ctx, check_user(self.tenant, user_id))

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
