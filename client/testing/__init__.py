"""``pakr.testing``: an in-process fake pakr cluster for your application's tests.

No sockets, no processes, no server packages: each :class:`FakeNode` runs the real node-side
protocol steps of :mod:`pakr.proto` over a dict, behind the same transport seam the SDK uses
for gRPC, so a :class:`pakr.Client` of a :class:`FakeCluster` registers, recovers, counts
guesses, locks out and reports the same typed errors as against real nodes. Faults are
injected per node: down, slow, failing a few times, refusing, or lying::

    import pakr
    import pakr.testing

    def test_login_survives_two_nodes_down() -> None:
        with pakr.testing.FakeCluster(n=5, t=3) as cluster:
            client = cluster.client()
            client.register("alice", "pw", b"key")
            cluster.take_down(1, 2)
            assert client.recover("alice", "pw") == b"key"
            with pytest.raises(pakr.InvalidPassword):
                client.recover("alice", "wrong")

Not a security boundary: everything runs in your process, with development Argon2id
parameters. ``cluster.async_client()`` gives the asyncio face.
"""

from __future__ import annotations

from ._cluster import DEFAULT_TENANT, FakeCluster
from ._node import FakeNode
from ._transport import FakeTransport, Faults, Lie, Rewrite, Rpc, lie_rewrite

__all__ = [
    "DEFAULT_TENANT",
    "FakeCluster",
    "FakeNode",
    "FakeTransport",
    "Faults",
    "Lie",
    "Rewrite",
    "Rpc",
    "lie_rewrite",
]
