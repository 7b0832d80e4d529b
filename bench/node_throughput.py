"""Recover2 throughput of one node process, next to its floor and a bare gRPC echo.

Measures, in one run on this machine:

* **node**: Recover2 calls/s against one ``pakr node serve`` process (TLS, durable SQLite:
  WAL + synchronous=FULL, group commit), every call a counted guess;
* **floor**: what a node without group commit could do at best on one core — a loop of
  1 durable SQLite commit (the guess-count UPDATE) + 3 scalar multiplications per call;
* **echo**: a bare grpc.aio unary echo server over the same TLS setup and concurrency.

Prints the rates, node/floor and node/echo ratios, and the node's RSS. The load generator
runs in this process with requests and tokens prepared up front, so the client spends as
little CPU as possible on the shared cores.

    .venv/bin/python bench/node_throughput.py [--seconds 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from pakr.proto import wire
from pakr.proto.group import Element, Scalar
from pakr.proto.hpke import HpkePublicKey
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.messages import NodeRef, Recover2, UserRef
from pakr.proto.register import new_version, prepare_registration
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc

GUESSES_PER_USER = 100


def start(
    cmd: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready:
        proc.kill()
        raise SystemExit("server did not start")
    return proc, json.loads(proc.stdout.readline())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


# ------------------------------------------------------------------------------ floor


def measure_floor(directory: Path, seconds: float) -> float:
    """Calls/s of 1 durable commit (an UPDATE like count_guess's) + 3 scalar mults."""
    conn = sqlite3.connect(directory / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, b BLOB)")
    conn.execute("INSERT INTO t VALUES (1, 0, NULL)")
    k = Scalar.random()
    point = Element.base_mult(Scalar.random())
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(3):
            point * k  # evaluation, and the DLEQ proof's two mults
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE t SET n = n + 1, b = ? WHERE id = 1", (os.urandom(48),))
        conn.execute("COMMIT")
        count += 1
    rate = count / (time.perf_counter() - started)
    conn.close()
    return rate


# ------------------------------------------------------------------------------ echo


async def _echo_server(port_out: str) -> None:
    from pakr.node.tls import make_self_signed

    cert, key = make_self_signed("echo", [])

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    print(json.dumps({"listening": f"127.0.0.1:{port}", "cert": cert.decode()}), flush=True)
    await server.wait_for_termination()


async def _drive(calls: list[Any], concurrency: int, seconds: float) -> tuple[int, int, float]:
    """Run ``calls`` (zero-arg coroutine factories) with ``concurrency`` in flight."""
    ok = failed = 0
    index = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal ok, failed, index
        while time.perf_counter() < deadline and index < len(calls):
            call = calls[index]
            index += 1
            try:
                await call()
                ok += 1
            except grpc.aio.AioRpcError:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed, time.perf_counter() - started


async def measure_echo(seconds: float, concurrency: int) -> tuple[float, float]:
    proc, info = start([sys.executable, __file__, "--echo-server"])
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=info["cert"].encode())
        async with grpc.aio.secure_channel(info["listening"], creds) as channel:
            method = channel.unary_unary("/bench.Echo/Echo")
            payload = os.urandom(80)
            await method(payload)
            calls = [lambda: method(payload, timeout=30)] * 10_000_000
            cpu_before = cpu_seconds(proc.pid)
            ok, _, elapsed = await _drive(calls, concurrency, seconds)
            cpu = cpu_seconds(proc.pid) - cpu_before
        return ok / elapsed, cpu / max(ok, 1) * 1e6
    finally:
        proc.terminate()
        proc.wait()


# ------------------------------------------------------------------------------ node


async def measure_node(
    directory: Path, seconds: float, concurrency: int, expected_rate: float
) -> dict[str, Any]:
    key = TenantKey.generate("bench")
    init = subprocess.run(
        [
            sys.executable,
            "-m",
            "pakr.node",
            "init",
            "--dir",
            str(directory / "node"),
            "--index",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--tenant",
            f"{key.kid}={key.public_key_text}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(init.stdout)
    config = Path(info["config"])
    text = config.read_text()
    for old, new in (("user_rate = 5.0", "user_rate = 0"), ("peer_rate = 500.0", "peer_rate = 0")):
        text = text.replace(old, new)
    config.write_text(text)
    node_id = bytes.fromhex(info["node_id"])
    ref = NodeRef(node_id=node_id, index=1)
    node_key = HpkePublicKey.from_text(Path(info["hpke_public_key"]).read_text())
    proc, serving = start([sys.executable, "-m", "pakr.node", "serve", "--config", str(config)])
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(info["tls_cert"]).read_bytes())
        async with grpc.aio.secure_channel(serving["listening"], creds) as channel:
            stub = node_pb2_grpc.NodeStub(channel)
            users_needed = int(expected_rate * seconds * 1.5 / GUESSES_PER_USER) + 2
            users: list[tuple[UserRef, bytes, str]] = []

            def md(user: UserRef) -> list[tuple[str, str]]:
                token = issue_token(key, user_id=user.user_id, audience=info["node_id"], ttl=3600)
                return [("authorization", f"Bearer {token}")]

            for i in range(users_needed):
                user = UserRef("bench", f"user-{i}")
                version = new_version()
                plan = prepare_registration(
                    user=user,
                    nodes=[ref],
                    threshold=1,
                    version=version,
                    epoch=1,
                    expected={node_id: None},
                    access_key=os.urandom(32),
                    encryption_key_seed=os.urandom(32),
                    secret=b"x",
                    argon2=DEV_ARGON2,
                    max_guesses=GUESSES_PER_USER,
                )
                header = wire.header_to_pb(os.urandom(16), user)
                await stub.Register2(
                    wire.register2_to_pb(
                        header, plan.requests[node_id], node_id=node_id, node_key=node_key
                    ),
                    metadata=md(user),
                )
                await stub.Register3(
                    pb.Register3Request(header=header, version=version), metadata=md(user)
                )
                users.append((user, version, md(user)[0][1]))
            calls = []
            for _ in range(GUESSES_PER_USER):
                for user, version, auth in users:
                    request = wire.recover2_to_pb(
                        wire.header_to_pb(os.urandom(16), user),
                        Recover2(
                            version=version,
                            attempt_id=os.urandom(16),
                            blinded_element=Element.base_mult(Scalar.random()),
                        ),
                    )
                    metadata = (("authorization", auth),)
                    calls.append(
                        lambda r=request, m=metadata: stub.Recover2(r, metadata=m, timeout=30)
                    )
                if len(calls) > expected_rate * seconds * 1.3:
                    break
            # warm up, then measure
            await _drive(calls[:200], concurrency, 5)
            cpu_before = cpu_seconds(proc.pid)
            client_before = time.process_time()
            ok, failed, elapsed = await _drive(calls[200:], concurrency, seconds)
            cpu = cpu_seconds(proc.pid) - cpu_before
            client_cpu = time.process_time() - client_before
        rss, peak = rss_kib(proc.pid)
        return {
            "rate": ok / elapsed,
            "ok": ok,
            "failed": failed,
            "rss_kib": rss,
            "peak_kib": peak,
            "cpu_us_per_call": cpu / max(ok, 1) * 1e6,
            "cpu_cores": cpu / elapsed,
            "client_us_per_call": client_cpu / max(ok, 1) * 1e6,
        }
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        asyncio.run(_echo_server(""))
        return
    with tempfile.TemporaryDirectory(prefix="pakr-bench-") as tmp:
        directory = Path(tmp)
        floor = measure_floor(directory, min(args.seconds, 5.0))
        echo, echo_cpu = asyncio.run(measure_echo(args.seconds, args.concurrency))
        node = asyncio.run(measure_node(directory, args.seconds, args.concurrency, 2500))
    print(f"load average before/after: {os.getloadavg()[0]:.2f}")
    print(f"floor (1 durable commit + 3 scalar mults): {floor:8.0f} calls/s")
    print(
        f"bare grpc.aio echo (TLS, {args.concurrency} in flight): {echo:8.0f} calls/s"
        f" (server CPU {echo_cpu:.0f} us per call)"
    )
    print(
        f"node Recover2 (TLS, durable SQLite, {args.concurrency} in flight): {node['rate']:8.0f}"
        f" calls/s ({node['ok']} ok, {node['failed']} failed)"
    )
    print(
        f"node CPU: {node['cpu_us_per_call']:.0f} us per call, {node['cpu_cores']:.2f} cores busy;"
        f" load generator CPU: {node['client_us_per_call']:.0f} us per call"
    )
    print(f"node / floor = {node['rate'] / floor:.2f}   node / echo = {node['rate'] / echo:.2f}")
    rss, peak = node["rss_kib"] / 1024, node["peak_kib"] / 1024
    print(f"node RSS after the run: {rss:.1f} MiB (peak {peak:.1f} MiB)")


if __name__ == "__main__":
    main()
