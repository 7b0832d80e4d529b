"""Real ``pakr node`` processes and a grpc.aio client driving them with the pure client steps.

``init_node`` runs ``pakr node init`` (the cross-team CLI contract) and ``Replica`` runs
``pakr node serve`` on a config copied per replica (own port, rate limits off, optionally
another storage URL): several replicas of ONE node identity (same id, index, TLS key and
data key) share one PostgreSQL database. Every process is killed in ``stop`` (and by the
fixtures' finalizers), even when a test fails.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from pakr.node.config import RateLimits, load_config, resolve_storage_url
from pakr.proto import wire
from pakr.proto.channel import refusal_from_trailers
from pakr.proto.errors import NodeRefusal
from pakr.proto.hpke import HpkePublicKey
from pakr.proto.messages import NodeRef, Recover2, Recover2Reply, Recover3, Recover3Reply, UserRef
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc
from tests.node.node_helpers import Registration, make_registration

NODE_CMD = [sys.executable, "-m", "pakr.node"]
READY_TIMEOUT = 30.0


def run_node_cmd(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``pakr node ARGS`` to completion; its one JSON line (fails on non-zero exit)."""
    done = subprocess.run(
        [*NODE_CMD, *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"pakr node {args[0]} exited {done.returncode}: {done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass
class NodeDir:
    """A node directory made by ``pakr node init``."""

    path: Path
    node_id: bytes
    index: int
    tenant_key: TenantKey

    @property
    def config(self) -> Path:
        return self.path / "node.toml"

    @property
    def ref(self) -> NodeRef:
        return NodeRef(node_id=self.node_id, index=self.index)

    @property
    def cert(self) -> bytes:
        return (self.path / "tls" / "node.crt").read_bytes()

    def replica_config(self, name: str, *, storage: str | None = None) -> Path:
        """A copy of node.toml listening on a fresh port with rate limits off."""
        config = load_config(self.config)
        path = self.path / f"{name}.toml"
        replace(
            config,
            path=path,
            listen="127.0.0.1:0",
            rate_limits=RateLimits(0.0, 1, 0.0, 1),
            storage_url=resolve_storage_url(storage, self.path) if storage else config.storage_url,
        ).save()
        return path


def init_node(
    directory: Path,
    *,
    storage: str | None = None,
    index: int = 1,
    node_id: bytes | None = None,
    key: TenantKey | None = None,
) -> NodeDir:
    key = key or TenantKey.generate("acme")
    args = ["init", "--dir", str(directory), "--index", str(index), "--listen", "127.0.0.1:0"]
    args += ["--tenant", f"{key.kid}={key.public_key_text}"]
    if storage:
        args += ["--storage", storage]
    if node_id:
        args += ["--node-id", node_id.hex()]
    info = run_node_cmd(*args)
    return NodeDir(directory, bytes.fromhex(info["node_id"]), index, key)


@dataclass
class Replica:
    """One ``pakr node serve`` process."""

    config: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    stderr_path: Path | None = None

    def start(self) -> Replica:
        self.stderr_path = self.config.with_suffix(".stderr")
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [*NODE_CMD, "serve", "--config", str(self.config)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=self.env,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=0.2):
                    if self.proc.poll() is not None:
                        break
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    break
                try:
                    info = json.loads(line)
                except ValueError:
                    continue
                if "listening" in info:
                    self.address = str(info["listening"])
                    return self
        finally:
            sel.close()
        self.stop()
        raise RuntimeError(f"node serve did not become ready: {self.stderr()}")

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class NodeClient:
    """grpc.aio calls to one replica, for one node identity; refusals become NodeRefusal."""

    node: NodeDir
    address: str
    channel: grpc.aio.Channel = field(init=False)

    def __post_init__(self) -> None:
        creds = grpc.ssl_channel_credentials(root_certificates=self.node.cert)
        self.channel = grpc.aio.secure_channel(self.address, creds)
        self.stub = node_pb2_grpc.NodeStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    def _metadata(self, user: UserRef) -> list[tuple[str, str]]:
        token = issue_token(
            self.node.tenant_key, user_id=user.user_id, audience=self.node.node_id.hex()
        )
        return [("authorization", f"Bearer {token}")]

    async def _call(self, method: str, user: UserRef, request: Any) -> Any:
        try:
            return await getattr(self.stub, method)(
                request, metadata=self._metadata(user), timeout=30
            )
        except grpc.aio.AioRpcError as exc:
            refusal = refusal_from_trailers(exc)
            if refusal is not None:
                raise refusal from None
            raise

    def _header(self, user: UserRef) -> pb.RequestHeader:
        return wire.header_to_pb(os.urandom(16), user)

    async def register(self, reg: Registration) -> None:
        await self._call(
            "Register2",
            reg.user,
            wire.register2_to_pb(
                self._header(reg.user),
                reg.request,
                node_id=reg.node.node_id,
                node_key=HpkePublicKey.from_text((self.node.path / "hpke.pub").read_text()),
            ),
        )
        await self._call(
            "Register3",
            reg.user,
            pb.Register3Request(header=self._header(reg.user), version=reg.version),
        )

    async def recover2(self, user: UserRef, request: Recover2) -> Recover2Reply:
        reply = await self._call("Recover2", user, wire.recover2_to_pb(self._header(user), request))
        return wire.recover2_reply_from_pb(reply)

    async def recover3(self, user: UserRef, request: Recover3) -> Recover3Reply:
        reply = await self._call("Recover3", user, wire.recover3_to_pb(self._header(user), request))
        return wire.recover3_reply_from_pb(
            reply, user=user, node_id=self.node.node_id, request=request
        )

    async def status(self, user: UserRef) -> pb.UserStatus:
        reply = await self._call("Recover1", user, pb.Recover1Request(header=self._header(user)))
        return reply.status


def registration_for(node: NodeDir, user: UserRef, **kwargs: Any) -> Registration:
    return make_registration(user=user, node=node.ref, **kwargs)


__all__ = [
    "NodeClient",
    "NodeDir",
    "NodeRefusal",
    "Replica",
    "init_node",
    "registration_for",
    "run_node_cmd",
]
