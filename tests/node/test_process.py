"""The node as a process: ``pakr node init/serve/migrate``, busy ports, SIGTERM, SIGKILL.

Runs ``python -m pakr.node`` (the same ``add_commands`` tree ``pakr node`` mounts) so these
tests do not depend on the rest of the CLI.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from pakr.node.config import load_config
from pakr.node.store.base import SCHEMA_VERSION
from pakr.proto import wire
from pakr.proto.errors import ErrorKind
from pakr.proto.hpke import HpkePublicKey
from pakr.proto.messages import NodeRef
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc
from tests.node.conftest import refusal_of
from tests.node.node_helpers import ANY_REPLY_KEY, USER, attempt, make_registration

NODE_CMD = [sys.executable, "-m", "pakr.node"]  # = `pakr node`


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NODE_CMD, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class NodeProcess:
    """A ``pakr node serve`` subprocess; always killed by :meth:`stop`."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [*NODE_CMD, "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
        )
        self.info = self._read_ready_line()
        self.address: str = self.info["listening"]

    def _read_ready_line(self, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return dict(json.loads(line))
            if self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"node exited early: {err.decode()[-2000:]}")
        self.stop()
        raise AssertionError("node did not report where it listens")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return int(self.proc.returncode)


@pytest.fixture
def processes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def tenant_key() -> TenantKey:
    return TenantKey.generate("acme")


def init_node(directory: Path, key: TenantKey, *extra: str) -> dict[str, Any]:
    result = run_cli(
        "init",
        "--dir",
        str(directory),
        "--index",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--tenant",
        f"{key.kid}={key.public_key_text}",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_init_writes_a_node_directory(tmp_path: Path, tenant_key: TenantKey) -> None:
    info = init_node(tmp_path / "n1", tenant_key)
    directory = tmp_path / "n1"
    assert info["index"] == 1 and info["address"] == "127.0.0.1:0"
    assert len(bytes.fromhex(info["node_id"])) == 16
    assert info["config"] == str(directory / "node.toml")
    assert info["tls_cert"] == str(directory / "tls" / "node.crt")
    for name in ("node.toml", "tls/node.crt", "tls/node.key", "keys/data.key", "node.db"):
        assert (directory / name).exists(), name
    assert (directory / "keys" / "data.key").stat().st_mode & 0o777 == 0o600
    assert (directory / "tls/node.key").stat().st_mode & 0o777 == 0o600
    for path in [directory, *directory.rglob("*")]:  # everything the node wrote is private
        assert path.stat().st_mode & 0o077 == 0, path
    again = run_cli("init", "--dir", str(directory), "--index", "1", "--listen", "x:1")
    assert again.returncode == 2 and "--force" in again.stderr
    forced = init_node(directory, tenant_key, "--force", "--node-id", "ab" * 16)
    assert forced["node_id"] == "ab" * 16
    migrated = run_cli("migrate", "--config", str(directory / "node.toml"))
    assert migrated.returncode == 0 and json.loads(migrated.stdout) == {
        "schema_version": SCHEMA_VERSION
    }


def test_serve_health_and_sigterm(
    tmp_path: Path, tenant_key: TenantKey, processes: list[NodeProcess]
) -> None:
    info = init_node(tmp_path / "n1", tenant_key, "--metrics-listen", "127.0.0.1:0")
    node = NodeProcess(Path(info["config"]))
    processes.append(node)
    assert node.info["node_id"] == info["node_id"] and node.info["tls"] is True
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    cert = Path(info["tls_cert"]).read_bytes()
    with grpc.secure_channel(
        node.address, grpc.ssl_channel_credentials(root_certificates=cert)
    ) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="pakr.v1.Node"), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = node_pb2_grpc.NodeStub(channel)
        token = issue_token(tenant_key, user_id=USER.user_id, audience=info["node_id"])
        stub.Recover1(
            pb.Recover1Request(header=wire.header_to_pb(os.urandom(16), USER)),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
    import urllib.request

    port = node.info["metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'pakr_node_requests_total{method="Recover1",outcome="ok"} 1.0' in text
    assert token not in text
    assert node.proc.stderr is not None
    node.proc.terminate()
    assert node.proc.wait(timeout=15) == 0
    logs = node.proc.stderr.read().decode()
    entries = [json.loads(line) for line in logs.splitlines() if line.strip()]
    messages = [e["message"] for e in entries]
    assert "node serving" in messages and "node stopped" in messages
    assert token not in logs and USER.user_id not in logs
    assert node.stop() == 0


def test_serve_on_a_busy_port_fails_clearly(tmp_path: Path, tenant_key: TenantKey) -> None:
    info = init_node(tmp_path / "n1", tenant_key)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = Path(info["config"])
        replace(load_config(config), listen=f"127.0.0.1:{port}").save()
        result = run_cli("serve", "--config", str(config))
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_bad_config_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nid = "00"\n')
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 2 and "node.id" in result.stderr


def _call(stub: Any, method: str, request: Any, key: TenantKey, node_id: str) -> Any:
    token = issue_token(key, user_id=USER.user_id, audience=node_id)
    return getattr(stub, method)(
        request, metadata=[("authorization", f"Bearer {token}")], timeout=10
    )


@pytest.mark.parametrize("point", ["after_commit", "before_commit"])
def test_sigkill_never_uncounts_a_guess(
    tmp_path: Path, tenant_key: TenantKey, processes: list[NodeProcess], point: str
) -> None:
    info = init_node(tmp_path / "n1", tenant_key)
    config = Path(info["config"])
    cert = Path(info["tls_cert"]).read_bytes()
    ref = NodeRef(node_id=bytes.fromhex(info["node_id"]), index=1)
    reg = make_registration(node=ref, max_guesses=100)
    rng = random.Random(1234)
    evaluations = crashes = 0
    registered = False
    for _ in range(3):
        env = {"PAKR_CRASH_AT": f"recover2.{point}", "PAKR_CRASH_AFTER": str(rng.randint(1, 6))}
        node = NodeProcess(config, env)
        processes.append(node)
        creds = grpc.ssl_channel_credentials(root_certificates=cert)
        with grpc.secure_channel(node.address, creds) as channel:
            stub = node_pb2_grpc.NodeStub(channel)
            header = wire.header_to_pb(os.urandom(16), USER)
            if not registered:
                _call(
                    stub,
                    "Register2",
                    wire.register2_to_pb(
                        header,
                        reg.request,
                        node_id=ref.node_id,
                        node_key=HpkePublicKey.from_text(Path(info["hpke_public_key"]).read_text()),
                    ),
                    tenant_key,
                    info["node_id"],
                )
                _call(
                    stub,
                    "Register3",
                    pb.Register3Request(header=header, version=reg.version),
                    tenant_key,
                    info["node_id"],
                )
                registered = True
            status = _call(
                stub, "Recover1", pb.Recover1Request(header=header), tenant_key, info["node_id"]
            ).status
            count = 100 - status.committed.guesses_remaining
            assert count >= evaluations
            assert count == evaluations + (crashes if point == "after_commit" else 0)
            while True:
                request = wire.recover2_to_pb(header, attempt(reg, right=False).request)
                try:
                    _call(stub, "Recover2", request, tenant_key, info["node_id"])
                except grpc.RpcError as exc:
                    assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
                    break
                evaluations += 1
        assert node.proc.wait(timeout=15) == -signal.SIGKILL
        crashes += 1
    node = NodeProcess(config)
    processes.append(node)
    creds = grpc.ssl_channel_credentials(root_certificates=cert)
    with grpc.secure_channel(node.address, creds) as channel:
        stub = node_pb2_grpc.NodeStub(channel)
        header = wire.header_to_pb(os.urandom(16), USER)
        status = _call(
            stub, "Recover1", pb.Recover1Request(header=header), tenant_key, info["node_id"]
        ).status
        count = 100 - status.committed.guesses_remaining
        assert count >= evaluations
        assert count == evaluations + (crashes if point == "after_commit" else 0)
        # the node is healthy after the crashes: a typed refusal, not a broken store
        try:
            _call(
                stub,
                "Recover3",
                pb.Recover3Request(
                    header=header,
                    version=reg.version,
                    attempt_id=os.urandom(16),
                    unlock_proof=os.urandom(32),
                    reply_key=ANY_REPLY_KEY,
                ),
                tenant_key,
                info["node_id"],
            )
        except grpc.RpcError as exc:
            assert refusal_of(exc).kind is ErrorKind.STALE_ATTEMPT
    assert evaluations > 0
