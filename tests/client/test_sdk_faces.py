"""The sync face runs the async core; both faces agree. Plus packaging promises of ``pakr``."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading

import pytest

import pakr
from pakr.proto.errors import InvalidPassword
from pakr.testing import DEFAULT_TENANT as TENANT
from pakr.testing import FakeCluster

SECRET = b"\x01" * 32


def _sync_client(cluster: FakeCluster) -> pakr.Client:
    return pakr.Client(
        cluster.manifest,
        tenant=TENANT,
        token_provider=cluster.token_provider(),
        transport_factory=cluster.transport_factory,
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
    async with cluster.async_client() as async_client:
        await async_client.register("bob", "pw", SECRET)
    # The sync client runs on its own loop thread, so it works under a running loop too.
    sync_client = _sync_client(cluster)
    try:
        assert sync_client.recover("bob", "pw") == SECRET
        sync_client.register("bob", "pw2", b"two", if_exists="replace")
    finally:
        sync_client.close()
    async with cluster.async_client() as async_client:
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


def test_both_faces_take_the_same_typed_arguments() -> None:
    """One constructor signature and one from_manifest, no ``**kwargs`` anywhere."""
    sync_init = inspect.signature(pakr.Client.__init__)
    assert sync_init == inspect.signature(pakr.AsyncClient.__init__)
    kinds = {p.kind for p in sync_init.parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    typed = [p for name, p in sync_init.parameters.items() if name != "self"]
    assert all(p.annotation is not inspect.Parameter.empty for p in typed)
    assert pakr.Client.from_manifest.__func__ is pakr.AsyncClient.from_manifest.__func__  # type: ignore[attr-defined]
    from_manifest = inspect.signature(pakr.Client.from_manifest)
    init_options = [p for p in sync_init.parameters if p not in ("self", "manifest")]
    assert set(init_options) <= set(from_manifest.parameters)
    for name in ("register", "recover", "change_password", "delete", "status", "audit", "close"):
        sync_sig = inspect.signature(getattr(pakr.Client, name))
        async_sig = inspect.signature(getattr(pakr.AsyncClient, name))
        assert sync_sig.parameters == async_sig.parameters, name
        assert inspect.iscoroutinefunction(getattr(pakr.AsyncClient, name)), name


def test_from_manifest_builds_either_face(tmp_path: object) -> None:
    """from_manifest of each face returns that face (one implementation, two classes)."""
    from pakr.proto.manifest import OperatorKey, sign_manifest

    cluster = FakeCluster(3, 2)
    operator = OperatorKey.generate()
    document = sign_manifest(cluster.manifest, operator)
    options = {
        "tenant": TENANT,
        "token_provider": cluster.token_provider(),
        "operator_key": operator.public_key_text,
        "transport_factory": cluster.transport_factory,
    }
    with pakr.Client.from_manifest(document, **options) as client:  # type: ignore[arg-type]
        assert isinstance(client, pakr.Client)
        client.register("fm", "pw", SECRET)
    client = pakr.AsyncClient.from_manifest(document, **options)  # type: ignore[arg-type]
    assert isinstance(client, pakr.AsyncClient)


def _documented_names(path: str, heading: str) -> set[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / path).read_text()
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    import re

    names = re.findall(r"`pakr\.([A-Za-z_][A-Za-z0-9_]*)`", section)
    return {name for name in names if not name.startswith("_")}  # private, or __all__


def test_all_is_the_documented_public_api_and_every_name_resolves() -> None:
    documented = _documented_names("docs/sdk.md", "## The public API")
    assert {"errors", "testing"} <= documented
    assert sorted(documented - {"errors", "testing"}) == sorted(pakr.__all__)
    api = (__import__("pathlib").Path(__file__).resolve().parents[2] / "docs/api.md").read_text()
    for name in pakr.__all__:
        assert getattr(pakr, name) is not None
        listed = f"::: pakr.{name}\n" in api
        if name in pakr.errors.__all__:  # documented as members of ``::: pakr.errors``
            listed = f"        - {name}\n" in api.split("::: pakr.errors", 1)[1]
        assert listed, f"docs/api.md does not document pakr.{name}"
    assert pakr.errors.__all__ == sorted(n for n in pakr.__all__ if n in pakr.errors.__all__)
    with pytest.raises(AttributeError):
        _ = pakr.fanout  # type: ignore[attr-defined]


def test_error_categories() -> None:
    """Every public error is transient or permanent, never both; names stay stable."""
    from pakr import errors

    transient = {
        "ClusterUnavailable",
        "NodeUnreachable",
        "RateLimited",
        "Conflict",
        "CommitIncomplete",
    }
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.PakrError)
        assert getattr(pakr, name) is cls  # the same class from pakr and pakr.errors
        if name in ("PakrError", "TransientError", "PermanentError"):
            continue
        assert issubclass(cls, errors.TransientError) == (name in transient), name
        assert issubclass(cls, errors.PermanentError) == (name not in transient), name
    assert issubclass(errors.LockedOut, errors.InvalidPassword)
    assert "pakr._transport" not in errors.NodeUnreachable.__module__
