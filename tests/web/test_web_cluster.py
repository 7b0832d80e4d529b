"""The Python SDK's real protocol core through the nodes' web listeners, on a real cluster.

`pakr cluster up`'s nodes (one OS process each) serve browsers on http://127.0.0.1; the
manifest lists each node's web_origin. The SDK, given a transport that speaks the Connect
protocol (or gRPC-Web) over HTTP/1.1 exactly as a browser would, registers, fails a guess,
recovers and changes the password there; the ordinary gRPC SDK then recovers the same user,
and the other way round: one store, one servicer, two listeners.
"""

from __future__ import annotations

import pytest

import pakr
from pakr.coordinator.localcluster import LocalCluster
from tests.conftest import ClusterFactory
from tests.web.web_transport import web_transport_factory


def _client(cluster: LocalCluster, **kwargs: object) -> pakr.Client:
    return pakr.Client.from_manifest(
        cluster.manifest_path,
        operator_key=cluster.operator_public_key(),
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        deadline=10.0,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def cluster(module_local_cluster: ClusterFactory) -> LocalCluster:
    return module_local_cluster(nodes=3, threshold=2)


def test_the_manifest_lists_each_nodes_web_origin(cluster: LocalCluster) -> None:
    origins = [node.web_origin for node in cluster.manifest().nodes]
    assert all(o is not None and o.startswith("http://127.0.0.1:") for o in origins)
    assert len(set(origins)) == 3


@pytest.mark.parametrize("grpc_web", [False, True], ids=["connect", "grpc-web"])
def test_register_and_recover_over_the_web_then_over_grpc(
    cluster: LocalCluster, grpc_web: bool
) -> None:
    calls: list[str] = []
    user = f"web-{'grpcweb' if grpc_web else 'connect'}"
    secret = b"a browser's long-term key"
    web = web_transport_factory(grpc_web=grpc_web, calls=calls)
    with _client(cluster, transport_factory=web) as client:
        client.register(user, "correct horse", secret, max_guesses=5)
        with pytest.raises(pakr.InvalidPassword) as wrong:
            client.recover(user, "wrong horse")
        assert wrong.value.guesses_remaining == 4
        assert client.recover(user, "correct horse") == secret
        client.change_password(user, "correct horse", "battery staple")
        assert client.recover(user, "battery staple") == secret
    for step in ("Register1", "Register2", "Register3", "Recover1", "Recover2", "Recover3"):
        assert step in calls, f"{step} never went through the web listener"
    with _client(cluster) as grpc_client:  # the gRPC listeners: same store, same user
        assert grpc_client.recover(user, "battery staple") == secret
        with pytest.raises(pakr.InvalidPassword):
            grpc_client.recover(user, "correct horse")


def test_registered_over_grpc_recovered_over_the_web(cluster: LocalCluster) -> None:
    secret = b"registered by a backend"
    with _client(cluster) as grpc_client:
        grpc_client.register("from-grpc", "pw", secret)
    calls: list[str] = []
    with _client(cluster, transport_factory=web_transport_factory(calls=calls)) as client:
        assert client.recover("from-grpc", "pw") == secret
        with pytest.raises(pakr.InvalidPassword):
            client.recover("from-grpc", "not it")
    assert "Recover3" in calls
