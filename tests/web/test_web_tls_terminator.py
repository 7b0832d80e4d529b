"""P9 over the web listener: the TLS terminator in front of it learns no share, tag or ciphertext.

A browser cannot pin a node's certificate, so in production a reverse proxy with a
browser-trusted certificate terminates TLS and forwards plaintext HTTP to the node's loopback
web listener. Here each node of a real cluster gets such a recording proxy (its origin is what
the re-signed manifest lists as web_origin); the SDK, speaking the Connect protocol as a
browser does, registers, fails a guess, recovers and changes the password through them. No
16-byte window of any share, unlock tag, secret ciphertext or the secret appears in what the
proxies saw in the clear, while the public values of the same messages do.
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import pakr
from pakr import NodeTransport
from pakr.proto.manifest import Manifest, ManifestNode, OperatorKey, sign_manifest
from tests.conftest import ClusterFactory
from tests.security.sec_tls_proxy import RecordingProxy
from tests.security.test_p9_tls_terminator import Spy, _windows
from tests.web.web_transport import web_transport_factory


@pytest.fixture
def terminated(local_cluster: ClusterFactory, tmp_path: Path) -> Any:
    cluster = local_cluster(nodes=3, threshold=2)
    manifest: Manifest = cluster.manifest()
    proxies: list[RecordingProxy] = []
    try:
        nodes: list[ManifestNode] = []
        for node in manifest.nodes:
            assert node.web_origin is not None
            upstream = node.web_origin.removeprefix("http://")
            workdir = tmp_path / f"proxy{node.index}"
            workdir.mkdir()
            proxy = RecordingProxy(upstream, None, workdir, alpn=("http/1.1",)).start()
            proxies.append(proxy)
            nodes.append(replace(node, web_origin=f"https://{proxy.address}"))
        operator = OperatorKey.load(cluster.operator_key_path)
        document = sign_manifest(
            replace(manifest, nodes=tuple(nodes), serial=manifest.serial + 1), operator
        )
        yield cluster, document, proxies
    finally:
        for proxy in proxies:
            proxy.stop()


def test_a_tls_terminator_in_front_of_the_web_listener_sees_no_share(terminated: Any) -> None:
    cluster, document, proxies = terminated
    sink: list[bytes] = []
    public: list[bytes] = []
    # Each proxy's certificate is the only one its client trusts (a browser's CA, here).
    trust = {
        f"https://{p.address}": ssl.create_default_context(cafile=str(p.cert)) for p in proxies
    }

    def spying(node: ManifestNode, manifest: Manifest) -> NodeTransport:
        assert node.web_origin is not None
        web = web_transport_factory(verify=trust[node.web_origin])
        return Spy(web(node, manifest), sink, public)  # type: ignore[return-value]

    secret = b"the long-term key of a web app's user"
    with pakr.Client.from_manifest(
        document,
        operator_key=cluster.operator_public_key(),
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        transport_factory=spying,
        deadline=10.0,
    ) as client:
        client.register("in-a-browser", "pw one", secret, max_guesses=5)
        with pytest.raises(pakr.InvalidPassword):
            client.recover("in-a-browser", "wrong")
        assert client.recover("in-a-browser", "pw one") == secret
        client.change_password("in-a-browser", "pw one", "pw two")
        assert client.recover("in-a-browser", "pw two") == secret

    assert all(proxy.connections >= 1 for proxy in proxies)
    assert len(sink) >= 4 * 3 * 2 + 2 * 2 * 2  # two registrations on 3 nodes, two recoveries
    forbidden = _windows(secret)
    for value in sink:
        forbidden |= _windows(value)
    for proxy in proxies:
        seen = proxy.recorded
        assert b"POST /pakr.v1.Node/Register2 HTTP/1.1" in seen  # plaintext HTTP, recorded
        leaks = [w for w in forbidden if w in seen]
        assert not leaks, f"{proxy.address} saw {len(leaks)} windows of share material"
    everything = b"".join(p.recorded for p in proxies)
    assert all(value in everything for value in public)
