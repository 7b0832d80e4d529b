"""Web listener calls/s against the gRPC listener's, on one node process, in one run.

One ``pakr node serve`` process with its ``[web]`` listener on (plaintext on loopback, as
behind a TLS-terminating reverse proxy) serves the same calls three ways, taking turns so
machine load hits all alike:

* **grpc**: the gRPC listener (TLS, HTTP/2, one channel);
* **connect**: the web listener, Connect protocol, binary protobuf (HTTP/1.1 keep-alive);
* **grpc-web**: the web listener, gRPC-Web, binary (HTTP/1.1 keep-alive).

Two calls: Recover1 (token check, rate limits, one store read: the listener's own cost
shows most) and Recover2 (every call a counted guess: a durable commit and three scalar
multiplications). Prints calls/s and the node's CPU per call for each, and each web figure
as a ratio to gRPC's. The load generator runs in this process on the same cores (grpc.aio's C
core for gRPC, a minimal HTTP/1.1 keep-alive client for the web), so calls/s include some
client cost; the node's CPU per call does not.

    .venv/bin/python bench/web_listener.py [--seconds 5] [--concurrency 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from node_throughput import cpu_seconds, start  # bench/ is the script's own directory

from pakr.proto import wire
from pakr.proto.group import Element, Scalar
from pakr.proto.hpke import HpkePublicKey
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.messages import NodeRef, Recover2, UserRef
from pakr.proto.register import new_version, prepare_registration
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc

GUESSES_PER_USER = 100  # the protocol's limit (MAX_GUESSES_LIMIT)
MAX_RATE = 1500  # calls/s a turn prepares Recover2 guesses for (it ends early past that)
WAYS = ("grpc", "connect", "grpc-web")
Call = Callable[[], Awaitable[Any]]


async def drive(calls: list[Call], concurrency: int, seconds: float) -> tuple[int, int, float]:
    """Run ``calls`` with ``concurrency`` in flight for at most ``seconds``."""
    ok = failed = index = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal ok, failed, index
        while time.perf_counter() < deadline and index < len(calls):
            call = calls[index]
            index += 1
            try:
                await call()
                ok += 1
            except Exception:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok, failed, time.perf_counter() - started


def init_node(directory: Path, key: TenantKey) -> dict[str, Any]:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pakr.node", "init", "--dir", str(directory)),
            *("--index", "1", "--listen", "127.0.0.1:0"),
            *("--tenant", f"{key.kid}={key.public_key_text}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    info: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    config = Path(info["config"])
    text = config.read_text()
    for old, new in (("user_rate = 5.0", "user_rate = 0"), ("peer_rate = 500.0", "peer_rate = 0")):
        text = text.replace(old, new)
    config.write_text(text + '\n[web]\nlisten = "127.0.0.1:0"\ndev_origins = true\n')
    return info


class Http1:
    """A minimal HTTP/1.1 keep-alive client: one request at a time per connection.

    Far cheaper per call than a full client library, so on shared cores the calls/s say
    more about the listener than about the load generator (httpx costs a few times the
    node's own CPU per call)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        conn = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {self.host}\r\ncontent-length: {len(body)}\r\n"
            f"{head}\r\n".encode()
            + body
        )
        status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        fields = {
            k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
        }
        if "content-length" in fields:
            content = await reader.readexactly(int(fields["content-length"]))
        else:  # chunked
            parts = []
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            await reader.readexactly(2)
            content = b"".join(parts)
        self.idle.append(conn)
        return int(status_line.split()[1]), content

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


class Caller:
    """One way of making a call against the node, with its connections kept open."""

    def __init__(self, way: str, stub: Any, http: Http1) -> None:
        self.way = way
        self.stub = stub
        self.http = http

    async def __call__(self, method: str, request: Any, token: str) -> None:
        if self.way == "grpc":
            metadata = (("authorization", token),)
            await getattr(self.stub, method)(request, metadata=metadata, timeout=30)
            return
        message = request.SerializeToString()
        headers = {"authorization": token, "origin": "http://127.0.0.1:5173"}
        if self.way == "connect":
            headers |= {"content-type": "application/proto", "connect-protocol-version": "1"}
            body = message
        else:
            headers |= {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
            body = struct.pack(">BI", 0, len(message)) + message
        status, content = await self.http.post(f"/pakr.v1.Node/{method}", headers, body)
        if status != 200 or (self.way == "grpc-web" and b"grpc-status: 0" not in content):
            raise RuntimeError(f"{self.way} {method}: HTTP {status}")


async def run(seconds: float, concurrency: int, rounds: int) -> dict[str, dict[str, Any]]:
    key = TenantKey.generate("bench")
    with tempfile.TemporaryDirectory(prefix="pakr-bench-web-") as tmp:
        info = init_node(Path(tmp) / "node", key)
        node_id = bytes.fromhex(info["node_id"])
        node_key = HpkePublicKey.from_text(Path(info["hpke_public_key"]).read_text())
        config = info["config"]
        proc, serving = start([sys.executable, "-m", "pakr.node", "serve", "--config", config])
        try:
            creds = grpc.ssl_channel_credentials(Path(info["tls_cert"]).read_bytes())
            http = Http1("127.0.0.1", int(serving["web_port"]))
            async with grpc.aio.secure_channel(serving["listening"], creds) as channel:
                stub = node_pb2_grpc.NodeStub(channel)
                callers = {way: Caller(way, stub, http) for way in WAYS}
                turns = len(WAYS) * rounds
                per_turn = int(MAX_RATE * seconds / (GUESSES_PER_USER - 1)) + 1
                users = await register_users(stub, key, node_id, node_key, turns * per_turn)
                pools = [users[i * per_turn : (i + 1) * per_turn] for i in range(turns)]
                try:
                    return await measure(proc.pid, callers, pools, seconds, concurrency, rounds)
                finally:
                    await http.close()
        finally:
            proc.terminate()
            proc.wait()


async def register_users(
    stub: Any, key: TenantKey, node_id: bytes, node_key: HpkePublicKey, count: int
) -> list[tuple[UserRef, bytes, str]]:
    """``count`` users, registered over gRPC, each good for 99 counted guesses."""
    return list(
        await asyncio.gather(
            *(register_user(stub, key, node_id, node_key, i) for i in range(count))
        )
    )


async def register_user(
    stub: Any, key: TenantKey, node_id: bytes, node_key: HpkePublicKey, i: int
) -> tuple[UserRef, bytes, str]:
    user = UserRef("bench", f"user-{i}")
    version = new_version()
    plan = prepare_registration(
        user=user,
        nodes=[NodeRef(node_id=node_id, index=1)],
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
    auth = "Bearer " + issue_token(key, user_id=user.user_id, audience=node_id.hex(), ttl=3600)
    md = (("authorization", auth),)
    header = wire.header_to_pb(os.urandom(16), user)
    request = wire.register2_to_pb(
        header, plan.requests[node_id], node_id=node_id, node_key=node_key
    )
    await stub.Register2(request, metadata=md)
    fresh = "Bearer " + issue_token(key, user_id=user.user_id, audience=node_id.hex())
    await stub.Register3(
        pb.Register3Request(header=header, version=version),
        metadata=(("authorization", fresh),),
    )
    return user, version, auth


def recover1_calls(caller: Caller, user: UserRef, auth: str, n: int) -> list[Call]:
    request = pb.Recover1Request(header=wire.header_to_pb(os.urandom(16), user))
    return [lambda: caller("Recover1", request, auth)] * n


def recover2_calls(caller: Caller, users: list[tuple[UserRef, bytes, str]]) -> list[Call]:
    """Counted guesses, spread over the users (99 each, below their lockout)."""
    calls: list[Call] = []
    for _ in range(GUESSES_PER_USER - 1):
        for user, version, auth in users:
            request = wire.recover2_to_pb(
                wire.header_to_pb(os.urandom(16), user),
                Recover2(
                    version=version,
                    attempt_id=os.urandom(16),
                    blinded_element=Element.base_mult(Scalar.random()),
                ),
            )
            calls.append(lambda r=request, a=auth: caller("Recover2", r, a))
    return calls


async def measure(
    pid: int,
    callers: dict[str, Caller],
    pools: list[list[tuple[UserRef, bytes, str]]],
    seconds: float,
    concurrency: int,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    samples: dict[str, list[tuple[float, float]]] = {}
    for way in WAYS:  # warm every connection and code path up
        user, _, auth = pools[0][0]
        await drive(recover1_calls(callers[way], user, auth, 300), concurrency, seconds)
    turn = 0
    for _ in range(rounds):
        for way in WAYS:
            pool = pools[turn]
            turn += 1
            user, _, auth = pool[0]
            for method, calls in (
                ("Recover1", recover1_calls(callers[way], user, auth, int(MAX_RATE * seconds))),
                ("Recover2", recover2_calls(callers[way], pool)),
            ):
                cpu_before = cpu_seconds(pid)
                ok, failed, elapsed = await drive(calls, concurrency, seconds)
                if failed:
                    raise SystemExit(f"{failed} {way} {method} calls failed")
                cpu = cpu_seconds(pid) - cpu_before
                samples.setdefault(f"{method} {way}", []).append(
                    (ok / elapsed, cpu / max(ok, 1) * 1e6)
                )
    return {
        name: {
            "calls_per_s": statistics.median(rate for rate, _ in values),
            "node_cpu_us": statistics.median(cpu for _, cpu in values),
        }
        for name, values in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = asyncio.run(run(args.seconds, args.concurrency, args.rounds))
    print(f"one node, {args.concurrency} calls in flight, median of {args.rounds} turns each")
    print(
        f"{'call':<20}{'calls/s':>10}{'node CPU/call':>16}{'rate vs gRPC':>14}{'CPU vs gRPC':>13}"
    )
    for method in ("Recover1", "Recover2"):
        base = results[f"{method} grpc"]
        for way in WAYS:
            r = results[f"{method} {way}"]
            print(
                f"{method + ' ' + way:<20}{r['calls_per_s']:>10.0f}{r['node_cpu_us']:>13.0f} us"
                f"{r['calls_per_s'] / base['calls_per_s']:>14.2f}"
                f"{r['node_cpu_us'] / base['node_cpu_us']:>13.2f}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
