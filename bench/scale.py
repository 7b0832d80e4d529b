"""Scale benchmark: Recover2 calls/s over PostgreSQL replicas, and users stored vs DB size.

Measures, in one run on this machine:

* **throughput**: Recover2 calls/s (every call a counted guess, TLS, durable commits)
  against 1 ``pakr node serve`` process on SQLite and 1, 2 and 4 replicas of one node
  identity on one PostgreSQL database, with the same load generator (client processes
  round-robin over the replicas). Reports each rate next to the **per-call floor** measured
  in the same run: one in-process ``Store.count_guess`` + ``node_recover2`` after another on
  one connection (no gRPC, no concurrency), i.e. what one call costs end to end inside a
  node. CPU seconds per call are split between replicas, PostgreSQL and the load generator,
  which share the machine's cores and explain where the time goes.
* **scale**: database size and Recover2 latency (p50/p99, fixed concurrency) with 1k and
  100k users on each backend. Users are written straight into the database for speed: one
  real registration is the template and every other user gets a copy of its rows with a
  fresh version, resealed under that user's own AD, so every row is a valid, servable
  record of realistic size (only the client-side signature would not verify for a copy,
  which Recover2 on the node never checks). Calls target users sampled from the whole
  population.

PostgreSQL is a throwaway server (``tests/postgres/pgserver.py``) with default durability
(``fsync``, ``synchronous_commit = on``).

    .venv/bin/python bench/scale.py [--seconds 8] [--large 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test tree is a package: reuse its PostgreSQL helpers

import grpc  # noqa: E402
import psycopg  # noqa: E402

from pakr.node.cli import node_sealer  # noqa: E402
from pakr.node.config import load_config  # noqa: E402
from pakr.node.store import open_store  # noqa: E402
from pakr.node.store.rows import USER_COLUMNS, VERSION_COLUMNS, version_row  # noqa: E402
from pakr.node.store.sealing import Sealer  # noqa: E402
from pakr.proto import wire  # noqa: E402
from pakr.proto.counting import node_recover2  # noqa: E402
from pakr.proto.group import Element, Scalar  # noqa: E402
from pakr.proto.kdf import DEV_ARGON2  # noqa: E402
from pakr.proto.messages import NodeRef, Recover2, UserRef  # noqa: E402
from pakr.proto.records import VersionRecord  # noqa: E402
from pakr.proto.register import new_version, prepare_registration  # noqa: E402
from pakr.proto.tokens import TenantKey, issue_token  # noqa: E402
from pakr.proto.v1 import node_pb2_grpc  # noqa: E402
from tests.postgres.node_procs import NodeDir, Replica, init_node, run_node_cmd  # noqa: E402
from tests.postgres.pgserver import PgServer, start_server  # noqa: E402

GUESSES_PER_USER = 100
TENANT = "bench"
PEER = "bench"

# (tenant, user_id, version, blinded element, bearer token)
Target = tuple[str, str, bytes, bytes, str]


# ------------------------------------------------------------------------------ helpers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(server: PgServer) -> float:
    """CPU seconds of the postmaster and all its children (backends, WAL writer, …)."""
    try:
        postmaster = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = cpu_seconds(postmaster)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy() -> float:
    """CPU seconds all cores spent busy so far (every process on the machine)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def token_for(key: TenantKey, node_id: bytes, user_id: str) -> str:
    token = issue_token(key, user_id=user_id, audience=node_id.hex(), ttl=6 * 3600)
    return f"Bearer {token}"


def target(key: TenantKey, node_id: bytes, user: UserRef, version: bytes) -> Target:
    element = Element.base_mult(Scalar.random()).encoded
    return (user.tenant, user.user_id, version, element, token_for(key, node_id, user.user_id))


# ------------------------------------------------------------------------------ load generator


def _client_process(
    addresses: list[str],
    cert: bytes,
    targets: list[Target],
    concurrency: int,
    warmup: float,
    seconds: float,
    start_at: float,
) -> dict[str, Any]:
    """One load-generator process: ``concurrency`` Recover2 calls in flight, round-robin."""
    return asyncio.run(_client(addresses, cert, targets, concurrency, warmup, seconds, start_at))


async def _client(
    addresses: list[str],
    cert: bytes,
    targets: list[Target],
    concurrency: int,
    warmup: float,
    seconds: float,
    start_at: float,
) -> dict[str, Any]:
    creds = grpc.ssl_channel_credentials(root_certificates=cert)
    channels = [grpc.aio.secure_channel(a, creds) for a in addresses]
    stubs = [node_pb2_grpc.NodeStub(c) for c in channels]
    for stub in stubs:  # connect before the clock starts
        await asyncio.wait_for(channels[stubs.index(stub)].channel_ready(), 30)
    elements = {t[3]: Element.decode(t[3]) for t in targets}
    await asyncio.sleep(max(0.0, start_at - time.time()))
    measure_from = time.perf_counter() + warmup
    deadline = measure_from + seconds
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    counter = random.randrange(len(targets))
    cpu_start = [0.0]

    async def worker(w: int) -> None:
        nonlocal counter
        call = w
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return
            counter += 1
            tenant, user_id, version, element, auth = targets[counter % len(targets)]
            stub = stubs[call % len(stubs)]
            call += 1
            request = wire.recover2_to_pb(
                wire.header_to_pb(os.urandom(16), UserRef(tenant, user_id)),
                Recover2(
                    version=version, attempt_id=os.urandom(16), blinded_element=elements[element]
                ),
            )
            started = time.perf_counter()
            try:
                await stub.Recover2(request, metadata=(("authorization", auth),), timeout=30)
            except grpc.aio.AioRpcError as exc:
                kind = exc.code().name
                for k, v in exc.trailing_metadata() or ():
                    if k == wire.ERROR_METADATA_KEY:
                        kind = wire.error_detail_from_bytes(bytes(v)).kind.name
                if started >= measure_from:
                    errors[kind] += 1
                continue
            if started >= measure_from and time.perf_counter() <= deadline:
                latencies.append(time.perf_counter() - started)

    async def cpu_mark() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_start[0] = sum(os.times()[:2])

    await asyncio.gather(cpu_mark(), *(worker(i) for i in range(concurrency)))
    cpu = sum(os.times()[:2]) - cpu_start[0]
    for channel in channels:
        await channel.close()
    return {"latencies": latencies, "errors": dict(errors), "cpu": cpu}


def drive(
    addresses: list[str],
    cert: bytes,
    targets: list[Target],
    *,
    clients: int,
    concurrency: int,
    seconds: float,
    warmup: float = 1.5,
    cpu_probes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``clients`` load-generator processes; merged rate, latencies and CPU split."""
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # time for the processes to import and connect
    random.shuffle(targets)
    slices = [targets[i::clients] for i in range(clients)]
    per_client = max(1, concurrency // clients)
    with ctx.Pool(clients) as pool:
        pending = [
            pool.apply_async(
                _client_process,
                (addresses, cert, slices[i], per_client, warmup, seconds, start_at),
            )
            for i in range(clients)
        ]
        before: dict[str, float] = {}
        probes = cpu_probes or {}
        time.sleep(max(0.0, start_at + warmup - time.time()))
        for name, probe in probes.items():
            before[name] = probe()
        time.sleep(seconds)
        after = {name: probe() for name, probe in probes.items()}
        results = [p.get(timeout=seconds + 120) for p in pending]
    latencies = [x for r in results for x in r["latencies"]]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    ok = len(latencies)
    cpu = {name: after[name] - before[name] for name in probes}
    cpu["load generator"] = sum(r["cpu"] for r in results)
    if "machine" in cpu:  # busy time not accounted to this benchmark's processes
        cpu["machine"] -= sum(v for k, v in cpu.items() if k != "machine")
        cpu["other processes"] = cpu.pop("machine")
    return {
        "rate": ok / seconds,
        "ok": ok,
        "errors": dict(errors),
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "cpu_ms_per_call": {k: v / max(ok, 1) * 1e3 for k, v in cpu.items()},
        "cpu_cores": {k: v / seconds for k, v in cpu.items()},
    }


# ------------------------------------------------------------------------------ setup


async def seed_users(url: str, sealer: Sealer, node: NodeRef, count: int) -> list[Any]:
    """Register ``count`` real users (client steps + Store API); their (user, version)."""
    store = await open_store(url, sealer)
    users = []
    try:
        for i in range(count):
            user = UserRef(TENANT, f"user-{i:06d}")
            version = new_version()
            plan = prepare_registration(
                user=user,
                nodes=[node],
                threshold=1,
                version=version,
                epoch=1,
                expected={node.node_id: None},
                access_key=os.urandom(32),
                encryption_key_seed=os.urandom(32),
                secret=b"bench secret",
                argon2=DEV_ARGON2,
                max_guesses=GUESSES_PER_USER,
            )
            await store.register_pending(
                user, plan.requests[node.node_id], node=node, now=time.time(), peer=PEER
            )
            await store.commit(user, version, now=time.time(), peer=PEER)
            users.append((user, version))
    finally:
        await store.close()
    return users


async def template_record(url: str, sealer: Sealer, user: UserRef) -> VersionRecord:
    store = await open_store(url, sealer)
    try:
        record = await store.get_user(user)
    finally:
        await store.close()
    assert record is not None and record.committed is not None
    return record.committed


def filler_rows(
    sealer: Sealer, template: VersionRecord, start: int, stop: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[UserRef, bytes]]]:
    now = time.time()
    users, versions, made = [], [], []
    for i in range(start, stop):
        user = UserRef(TENANT, f"user-{i:06d}")
        rec = replace(template, version=os.urandom(16), created_at=now)
        users.append((user.tenant, user.user_id, bytes(8), now))
        versions.append(version_row(sealer, user, "committed", rec))
        made.append((user, rec.version))
    return users, versions, made


def insert_rows(url: str, users: list[tuple[Any, ...]], versions: list[tuple[Any, ...]]) -> None:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite://") :], isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO users ({', '.join(USER_COLUMNS)}) VALUES (?, ?, ?, ?)", users
            )
            marks = ", ".join("?" for _ in VERSION_COLUMNS)
            conn.executemany(
                f"INSERT INTO versions ({', '.join(VERSION_COLUMNS)}) VALUES ({marks})",
                versions,
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY users ({', '.join(USER_COLUMNS)}) FROM STDIN") as copy:
            for row in users:
                copy.write_row(row)
        with cur.copy(f"COPY versions ({', '.join(VERSION_COLUMNS)}) FROM STDIN") as copy:
            for row in versions:
                copy.write_row(row)


def reset_counts(url: str) -> None:
    sql = "UPDATE versions SET guess_count = 0, attempt_id = NULL, attempt_element = NULL,"
    sql += " attempt_nonce = NULL, attempt_started_at = NULL, attempt_used = 0"
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite://") :])
        try:
            conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(url) as conn:
            conn.execute(sql)


def db_size(url: str) -> int:
    """Bytes on disk for the node's data (SQLite: file after a WAL checkpoint)."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite://") :])
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


async def measure_floor(url: str, sealer: Sealer, users: list[Any], seconds: float) -> float:
    """Sequential in-process count_guess + node_recover2 calls/s on one connection."""
    store = await open_store(url, sealer)
    calls = 0
    try:
        element = Element.base_mult(Scalar.random())
        started = time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            user, version = users[calls % len(users)]
            request = Recover2(version=version, attempt_id=os.urandom(16), blinded_element=element)
            nonce = os.urandom(16)
            result = await store.count_guess(user, request, nonce=nonce, now=time.time(), peer=PEER)
            node_recover2(result.record, request, nonce=nonce)
            calls += 1
        return calls / (time.perf_counter() - started)
    finally:
        await store.close()


def start_replicas(node: NodeDir, configs: list[Path]) -> list[Replica]:
    running: list[Replica] = []
    try:
        for config in configs:
            running.append(Replica(config).start())
    except BaseException:
        for r in running:
            r.stop()
        raise
    return running


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight, total")
    parser.add_argument("--users", type=int, default=600, help="real users for throughput")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument(
        "--repeat", type=int, default=1, help="throughput rounds (interleaved); best is kept"
    )
    parser.add_argument("--skip-scale", action="store_true", help="throughput only")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    server = start_server()
    tmp = Path(tempfile.mkdtemp(prefix="pakr-scale-"))
    results: dict[str, Any] = {"throughput": {}, "scale": {}}
    try:
        key = TenantKey.generate(TENANT)
        tp_url = server.create_database("bench_tp")
        pg_node = init_node(tmp / "pg", storage=tp_url, key=key)
        run_node_cmd("migrate", "--config", str(pg_node.config))
        lite_node = init_node(tmp / "lite", node_id=pg_node.node_id, key=key)
        sealer_pg = node_sealer(load_config(pg_node.config))
        sealer_lite = node_sealer(load_config(lite_node.config))
        lite_url = load_config(lite_node.config).storage_url
        ref = pg_node.ref

        print(f"seeding {args.users} users on each backend …", flush=True)
        pg_users = asyncio.run(seed_users(tp_url, sealer_pg, ref, args.users))
        lite_users = asyncio.run(seed_users(lite_url, sealer_lite, ref, args.users))

        floor = {
            "postgresql": asyncio.run(measure_floor(tp_url, sealer_pg, pg_users, 3.0)),
            "sqlite": asyncio.run(measure_floor(lite_url, sealer_lite, lite_users, 3.0)),
        }
        results["floor_calls_per_s"] = floor
        print(f"per-call floor: {json.dumps({k: round(v) for k, v in floor.items()})}")

        runs: list[tuple[str, NodeDir, str, int, list[Any]]] = [
            ("sqlite x1", lite_node, lite_url, 1, lite_users)
        ]
        for n in (int(x) for x in args.replicas.split(",")):
            runs.append((f"postgresql x{n}", pg_node, tp_url, n, pg_users))
        for (name, node, url, n, users), rep in (
            (run, rep) for rep in range(args.repeat) for run in runs
        ):
            reset_counts(url)
            configs = [node.replica_config(f"r{i}") for i in range(n)]
            running = start_replicas(node, configs)
            try:
                probes: dict[str, Any] = {
                    "machine": machine_busy,
                    "replicas": lambda rs=running: sum(
                        cpu_seconds(r.proc.pid) for r in rs if r.proc
                    ),
                }
                if url.startswith("postgres"):
                    probes["postgresql"] = lambda: postgres_cpu(server)
                targets = [target(key, node.node_id, u, v) for u, v in users]
                out = drive(
                    [r.address for r in running],
                    node.cert,
                    targets,
                    clients=args.clients,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    cpu_probes=probes,
                )
            finally:
                for r in running:
                    r.stop()
            best = results["throughput"].get(name)
            if best is None or out["rate"] > best["rate"]:
                results["throughput"][name] = out
            results.setdefault("all_rates", {}).setdefault(name, []).append(out["rate"])
            split = {k: round(v, 3) for k, v in out["cpu_ms_per_call"].items()}
            print(
                f"[{rep + 1}/{args.repeat}] {name:>15}: {out['rate']:7.0f} calls/s"
                f"  p50 {out['p50_ms']:.1f} ms"
                f"  p99 {out['p99_ms']:.1f} ms  errors {out['errors']}"
                f"  cpu ms/call {json.dumps(split)}",
                flush=True,
            )

        # ------------------------------------------------------------------ scale
        for backend in () if args.skip_scale else ("postgresql", "sqlite"):
            node = pg_node if backend == "postgresql" else lite_node
            sealer = sealer_pg if backend == "postgresql" else sealer_lite
            if backend == "postgresql":
                url = server.create_database("bench_scale")
            else:
                url = "sqlite:///" + str(node.path / "scale.db")
            config = node.replica_config("scale", storage=url)
            url = load_config(config).storage_url  # resolved: sqlite:///<absolute path>
            real = asyncio.run(seed_users(url, sealer, ref, 1))
            template = asyncio.run(template_record(url, sealer, real[0][0]))
            population: list[tuple[UserRef, bytes]] = list(real)
            entries = {}
            for size in (args.small, args.large):
                t0 = time.perf_counter()
                batch = 20_000
                for start in range(len(population), size, batch):
                    users_rows, version_rows, made = filler_rows(
                        sealer, template, start, min(size, start + batch)
                    )
                    insert_rows(url, users_rows, version_rows)
                    population += made
                fill = time.perf_counter() - t0
                size_bytes = db_size(url)
                sample = random.sample(population, min(2000, len(population)))
                (replica,) = start_replicas(node, [config])
                try:
                    targets = [target(key, node.node_id, u, v) for u, v in sample]
                    out = drive(
                        [replica.address],
                        node.cert,
                        targets,
                        clients=1,
                        concurrency=16,
                        seconds=min(args.seconds, 5.0),
                    )
                finally:
                    replica.stop()
                entries[str(size)] = {
                    "users": len(population),
                    "db_bytes": size_bytes,
                    "fill_seconds": fill,
                    **{k: out[k] for k in ("rate", "p50_ms", "p99_ms", "errors")},
                }
                print(
                    f"{backend:>10} {len(population):>7} users: {size_bytes / 1e6:8.1f} MB"
                    f"  {out['rate']:6.0f} calls/s  p50 {out['p50_ms']:.1f} ms"
                    f"  p99 {out['p99_ms']:.1f} ms  errors {out['errors']}"
                    f"  (filled in {fill:.1f} s)",
                    flush=True,
                )
            small, large = entries[str(args.small)], entries[str(args.large)]
            entries["bytes_per_user"] = (large["db_bytes"] - small["db_bytes"]) / max(
                1, large["users"] - small["users"]
            )
            results["scale"][backend] = entries

        tp = results["throughput"]
        one = tp.get("postgresql x1", {}).get("rate", 0.0)
        results["ratios"] = {name: (out["rate"] / one if one else None) for name, out in tp.items()}
        print(
            "ratios vs postgresql x1:",
            json.dumps({k: round(v or 0, 2) for k, v in results["ratios"].items()}),
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
