"""The sync face runs the async core; both faces agree. Plus packaging promises of ``pakr``."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading

import pytest

import pakr
from pakr.proto.errors import InvalidPassword
from tests.client.sdk_fakes import TENANT, FakeCluster

SECRET = b"\x01" * 32


def _sync_client(cluster: FakeCluster) -> pakr.Client:
    return pakr.Client(
        cluster.manifest,
        tenant=TENANT,
        token_provider=cluster.provider(),
        transport_factory=cluster.factory,
        deadline=2.0,
    )


def test_sync_face_round_trip_and_errors() -> None:
    cluster = FakeCluster(3, 2)
    with _sync_client(cluster) as client:
        client.register("alice", "pw", SECRET, max_guesses=3)
        assert client.recover("alice", "pw") == SECRET
        with pytest.raises(InvalidPassword) as info:
            client.recover("alice", "nope")
        assert info.value.guesses_remaining == 2
        client.change_password("alice", "pw", "pw2")
        assert client.status("alice").registered is True
        client.delete("alice")
        with pytest.raises(pakr.NotRegistered):
            client.recover("alice", "pw2")
        assert "Client(" in repr(client) and "tenant='acme'" in repr(client)
    assert all(t.closed for t in cluster.transports)
    client.close()  # idempotent


async def test_sync_and_async_faces_interoperate() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.client() as async_client:
        await async_client.register("bob", "pw", SECRET)
    # The sync client runs on its own loop thread, so it works under a running loop too.
    sync_client = _sync_client(cluster)
    try:
        assert sync_client.recover("bob", "pw") == SECRET
        sync_client.register("bob", "pw2", b"two", if_exists="replace")
    finally:
        sync_client.close()
    async with cluster.client() as async_client:
        assert await async_client.recover("bob", "pw2") == b"two"


def test_sync_client_is_usable_from_several_threads() -> None:
    cluster = FakeCluster(3, 2)
    results: dict[str, bytes] = {}
    with _sync_client(cluster) as client:
        for i in range(4):
            client.register(f"user{i}", f"pw{i}", bytes([i]) * 8)

        def work(i: int) -> None:
            results[f"user{i}"] = client.recover(f"user{i}", f"pw{i}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {f"user{i}": bytes([i]) * 8 for i in range(4)}


def test_closed_sync_client_refuses_calls() -> None:
    cluster = FakeCluster(3, 2)
    client = _sync_client(cluster)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.recover("x", "pw")


def test_importing_node_or_proto_does_not_load_the_sdk() -> None:
    code = (
        "import sys, pakr.proto.recover, pakr.node\n"
        "loaded = [m for m in sys.modules if m in ('pakr._async_client', 'pakr._sync_client',"
        " 'pakr._transport', 'grpc')]\n"
        "assert not loaded, loaded\n"
        "import pakr\n"
        "assert pakr.Client.__module__ == 'pakr._sync_client'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_have_docstrings() -> None:
    for name in pakr.__all__:
        value = getattr(pakr, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name
    for cls in (pakr.Client, pakr.AsyncClient):
        for attr in ("register", "recover", "change_password", "delete", "status", "close"):
            assert getattr(cls, attr).__doc__, f"{cls.__name__}.{attr}"
