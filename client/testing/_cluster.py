""":class:`FakeCluster`: n fake nodes, a manifest naming them, a tenant key, and clients."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from types import TracebackType

from pakr._async_client import AsyncClient
from pakr._cluster import PhaseObserver
from pakr._fanout import RetryPolicy
from pakr._sync_client import Client
from pakr._tokens import DevTokenProvider, TokenProvider
from pakr._transport import NodeTransport
from pakr.proto.errors import ConfigError, ErrorKind, NodeRefusal
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.manifest import Manifest, ManifestNode, new_manifest
from pakr.proto.messages import UserRef
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.tokens import TenantKey

from ._node import FakeNode
from ._transport import FakeTransport, Lie, Rewrite, Rpc, lie_rewrite

DEFAULT_TENANT = "acme"


class FakeCluster:
    """An in-process pakr cluster for tests: no sockets, no processes, no node package.

    ``n`` nodes, ``t`` of which recover a secret (``r`` must hold a new registration;
    default n), each a :class:`FakeNode` running the real protocol steps over a dict.
    Nodes are numbered 1..n, as in the manifest (``node1`` ... ``noden``)::

        with pakr.testing.FakeCluster(n=5, t=3) as cluster:
            client = cluster.client()
            client.register("alice", "pw", secret)
            cluster.take_down(1, 2)
            assert client.recover("alice", "pw") == secret  # 3 of 5 still answer
            cluster.make_liar(3, "evaluation")
            with pytest.raises(pakr.ProtocolError):  # 2 honest nodes are too few
                client.recover("alice", "pw")

    ``tenant_key`` (default: a new one for ``tenant``) signs the tokens; pass another
    cluster's to share a tenant between clusters. Argon2id runs with the small development
    parameters by default (``argon2=``), so a recovery takes milliseconds. Leaving the
    ``with`` block closes the sync clients it made.
    """

    def __init__(
        self,
        n: int = 5,
        t: int = 3,
        *,
        r: int | None = None,
        tenant: str = DEFAULT_TENANT,
        tenant_key: TenantKey | None = None,
        argon2: Argon2Params = DEV_ARGON2,
    ) -> None:
        self.tenant_key = tenant_key or TenantKey.generate(tenant)
        self.tenant = self.tenant_key.tenant
        self._offset = 0.0
        nodes = [
            ManifestNode(
                node_id=os.urandom(16),
                index=i + 1,
                address=f"fake-node{i + 1}.invalid:443",
                hpke_public_key=HpkePrivateKey.from_seed(os.urandom(32)).public,
            )
            for i in range(n)
        ]
        self.manifest: Manifest = new_manifest(
            cluster_id="fake",
            nodes=nodes,
            threshold=t,
            register_threshold=r,
            argon2=argon2,
            dev=True,
        )
        keys = {self.tenant_key.kid: self.tenant_key.public_key}
        self.nodes = [FakeNode(node.ref, keys, clock=self._now) for node in nodes]
        self.transports = [FakeTransport(node) for node in self.nodes]
        self._by_id = {transport.node.node_id: transport for transport in self.transports}
        self._clients: list[Client] = []

    def _now(self) -> float:
        return time.time() + self._offset

    def __repr__(self) -> str:
        m = self.manifest
        return f"FakeCluster(n={len(m.nodes)}, t={m.threshold}, tenant={self.tenant!r})"

    def __enter__(self) -> FakeCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every sync client this cluster made (async ones are the caller's)."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    # ------------------------------------------------------------------ clients

    def transport_factory(self, node: ManifestNode, manifest: Manifest) -> NodeTransport:
        """The ``transport_factory`` that connects a client to these fake nodes."""
        transport = self._by_id.get(node.node_id)
        if transport is None:
            raise ConfigError(f"{node.ref.name} is not a node of this fake cluster")
        return transport

    def token_provider(self, scope: str = "user") -> DevTokenProvider:
        """A token provider with this cluster's tenant key (``scope="audit"`` for audit)."""
        return DevTokenProvider(self.tenant_key).with_scope(scope)

    def client(
        self,
        *,
        deadline: float = 2.0,
        retry: RetryPolicy | None = None,
        token_provider: TokenProvider | None = None,
        rng: Randomness = SYSTEM,
        on_phase: PhaseObserver | None = None,
    ) -> Client:
        """A blocking :class:`pakr.Client` of this cluster (closed with the cluster)."""
        client = Client(
            self.manifest,
            tenant=self.tenant,
            token_provider=token_provider or self.token_provider(),
            deadline=deadline,
            retry=retry,
            transport_factory=self.transport_factory,
            rng=rng,
            on_phase=on_phase,
        )
        self._clients.append(client)
        return client

    def async_client(
        self,
        *,
        deadline: float = 2.0,
        retry: RetryPolicy | None = None,
        token_provider: TokenProvider | None = None,
        rng: Randomness = SYSTEM,
        on_phase: PhaseObserver | None = None,
    ) -> AsyncClient:
        """An :class:`pakr.AsyncClient` of this cluster (``async with`` it, or close it)."""
        return AsyncClient(
            self.manifest,
            tenant=self.tenant,
            token_provider=token_provider or self.token_provider(),
            deadline=deadline,
            retry=retry,
            transport_factory=self.transport_factory,
            rng=rng,
            on_phase=on_phase,
        )

    # ------------------------------------------------------------------ nodes

    def node(self, index: int) -> FakeNode:
        """Node ``index`` (1..n): its records, audit log and guess counts."""
        return self.transport(index).fake

    def transport(self, index: int) -> FakeTransport:
        """Node ``index``'s transport (1..n): its ``faults`` and ``calls``."""
        if not 1 <= index <= len(self.transports):
            raise ConfigError(f"node index must be 1..{len(self.transports)}, not {index}")
        return self.transports[index - 1]

    def _each(self, indices: Iterable[int]) -> list[FakeTransport]:
        chosen = list(indices)
        return [self.transport(i) for i in chosen] if chosen else list(self.transports)

    def user(self, user_id: str) -> UserRef:
        """The user ``user_id`` of this cluster's tenant."""
        return UserRef(self.tenant, user_id)

    def guess_counts(self, user_id: str) -> dict[int, int | None]:
        """Node index -> wrong guesses counted for the user's committed version."""
        user = self.user(user_id)
        return {i + 1: node.guess_count(user) for i, node in enumerate(self.nodes)}

    # ------------------------------------------------------------------ faults

    def take_down(self, *indices: int) -> None:
        """Nodes ``indices`` stop answering (a refused connection) until :meth:`bring_up`."""
        for transport in self._each(indices):
            transport.faults.down = True

    def bring_up(self, *indices: int) -> None:
        """Nodes ``indices`` (default: all) answer again; their records are as they were."""
        for transport in self._each(indices):
            transport.faults.down = False

    def slow_down(self, index: int, seconds: float) -> None:
        """Node ``index`` takes ``seconds`` per call (past the deadline: a timeout)."""
        self.transport(index).faults.delay = seconds

    def fail_next(self, index: int, rpc: Rpc, times: int = 1) -> None:
        """The next ``times`` ``rpc`` calls at node ``index`` fail as "unavailable"."""
        self.transport(index).faults.transient_failures[rpc] += times

    def refuse(self, index: int, rpc: Rpc, kind: ErrorKind, message: str = "refused") -> None:
        """Every ``rpc`` call at node ``index`` is refused with ``kind`` (e.g. RATE_LIMITED)."""
        self.transport(index).faults.refuse[rpc] = NodeRefusal(kind, message)

    def make_liar(self, index: int, lie: Lie | Rewrite) -> None:
        """Node ``index`` tells ``lie`` (a :data:`~pakr.testing.Lie` or a rewrite callable)."""
        self.transport(index).faults.rewrite = lie if callable(lie) else lie_rewrite(lie)

    def heal(self, *indices: int) -> None:
        """Nodes ``indices`` (default: all) behave again: every fault off."""
        for transport in self._each(indices):
            transport.faults = type(transport.faults)()

    def advance(self, seconds: float) -> None:
        """Move the nodes' clock forward (e.g. past a lockout's grace period)."""
        self._offset += seconds

    def calls(self, rpc: Rpc) -> int:
        """How many ``rpc`` calls the nodes got in total (failed ones included)."""
        return sum(transport.calls[rpc] for transport in self.transports)
