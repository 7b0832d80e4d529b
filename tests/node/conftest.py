"""Fixtures for node tests: a real TLS grpc.aio node on 127.0.0.1, run in a background thread.

The node's event loop lives in its own thread so tests can be plain synchronous functions
(hypothesis drives those) and still use grpc.aio clients in their own loops for concurrency.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from pakr.node.config import (
    DataKeySource,
    HpkeKeyFiles,
    NodeConfig,
    RateLimits,
    load_config,
    resolve_storage_url,
)
from pakr.node.hpke_keys import generate_key_files, read_public_key
from pakr.node.server import NodeServer
from pakr.node.tls import write_certificate
from pakr.proto import wire
from pakr.proto.channel import refusal_from_trailers
from pakr.proto.errors import NodeRefusal
from pakr.proto.files import write_private_file
from pakr.proto.hpke import HpkePublicKey
from pakr.proto.messages import NodeRef, Register2, UserRef
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2_grpc

TENANT = "acme"
OTHER_TENANT = "globex"


class Clock:
    """A settable clock shared by the node and the token minting of a test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


def write_node_dir(
    directory: Path,
    *,
    index: int = 1,
    listen: str = "127.0.0.1:0",
    tenants: dict[str, str],
    rate: tuple[float, int, float, int] = (0.0, 1, 0.0, 1),
    node_id: bytes | None = None,
    crypto_thread: bool = False,
    storage: str = "sqlite:///node.db",
    sweep_seconds: float | None = None,
    web: str | None = None,
) -> Path:
    """A node directory like ``pakr node init`` writes, with test rate limits; ``web``: the
    body of a ``[web]`` table to add."""
    node_id = node_id or os.urandom(16)
    directory.mkdir(parents=True, exist_ok=True)
    write_certificate(directory / "tls/node.crt", directory / "tls/node.key", "test", [])
    (directory / "keys").mkdir(exist_ok=True)
    write_private_file(directory / "keys" / "data.key", os.urandom(32).hex().encode())
    generate_key_files(HpkeKeyFiles(directory / "hpke.key", directory / "hpke.pub"), force=True)
    path = directory / "node.toml"
    NodeConfig(
        path=path,
        node_id=node_id,
        index=index,
        listen=listen,
        insecure=False,
        tls_cert=directory / "tls/node.crt",
        tls_key=directory / "tls/node.key",
        storage_url=resolve_storage_url(storage, directory),
        data_key=DataKeySource(file=directory / "keys" / "data.key"),
        tenants=tenants,
        rate_limits=RateLimits(*rate),
        crypto_thread=crypto_thread,
        keys_dir=directory / "keys",
        sweep_seconds=15.0 if sweep_seconds is None else sweep_seconds,
        hpke=HpkeKeyFiles(directory / "hpke.key", directory / "hpke.pub"),
    ).save()
    if web is not None:
        with path.open("a", encoding="utf-8") as config:
            config.write(f"\n[web]\n{web}\n")
    return path


def dump_data_tables(db: Path) -> list[str]:
    """An SQL dump of the user data: everything but the audit log (which records authenticated
    outcomes) and the used single-use token ids (a well-formed, authenticated Register2/3 or
    Delete spends its token even when the node refuses it, so it cannot be replayed)."""
    conn = sqlite3.connect(db)
    try:
        return [
            line for line in conn.iterdump() if "audit" not in line and "token_uses" not in line
        ]
    finally:
        conn.close()


@dataclass
class RunningNode:
    config: NodeConfig
    server: NodeServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    clock: Clock
    key: TenantKey
    other_key: TenantKey
    cert: bytes
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def ref(self) -> NodeRef:
        return NodeRef(node_id=self.config.node_id, index=self.config.index)

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def db(self) -> Path:
        return self.config.path.parent / "node.db"

    def dump(self) -> list[str]:
        return dump_data_tables(self.db)

    @property
    def hpke_public(self) -> HpkePublicKey:
        return read_public_key(self.config.hpke_files())

    def register2_pb(self, header: Any, request: Register2) -> Any:
        """Register2 as a client sends it: shares sealed to this node's HPKE key."""
        return wire.register2_to_pb(
            header, request, node_id=self.config.node_id, node_key=self.hpke_public
        )

    def token(
        self,
        user: UserRef,
        *,
        scope: str = "user",
        key: TenantKey | None = None,
        audience: str | None = None,
        ttl: int = 300,
        now: float | None = None,
    ) -> str:
        return issue_token(
            key or self.key,
            user_id=user.user_id,
            audience=audience or self.config.node_id_hex,
            scope=scope,
            ttl=ttl,
            now=self.clock() if now is None else now,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.cert)

    def stub(self) -> node_pb2_grpc.NodeStub:
        channel = grpc.secure_channel(self.address, self.credentials())
        self.channels.append(channel)
        return node_pb2_grpc.NodeStub(channel)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def stop(self) -> None:
        for channel in self.channels:
            channel.close()
        try:
            self.run(self.server.stop(grace=1.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


def start_node(directory: Path, **kwargs: Any) -> RunningNode:
    key = TenantKey.generate(TENANT)
    other = TenantKey.generate(OTHER_TENANT)
    path = write_node_dir(
        directory,
        tenants={key.kid: key.public_key_text, other.kid: other.public_key_text},
        **kwargs,
    )
    config = load_config(path)
    clock = Clock()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(
            NodeServer.start(config, clock=clock), loop
        ).result(timeout=30)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        raise
    assert config.tls_cert is not None
    return RunningNode(
        config=config,
        server=server,
        loop=loop,
        thread=thread,
        clock=clock,
        key=key,
        other_key=other,
        cert=config.tls_cert.read_bytes(),
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    running = start_node(tmp_path / "node")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    running = start_node(tmp_path_factory.mktemp("shared") / "node")
    try:
        yield running
    finally:
        running.stop()


def refusal_of(error: grpc.RpcError) -> NodeRefusal:
    """The typed refusal in the ``pakr-error-bin`` trailer (fails the test if absent)."""
    refusal = refusal_from_trailers(error)
    if refusal is not None:
        return refusal
    raise AssertionError(f"no error detail on status {error.code()}")  # type: ignore[attr-defined]
