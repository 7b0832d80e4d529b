"""Erasure benchmark: sweeper delay, key rotation cost, and a reader next to the writer.

Measures, in one run on this machine:

* **erasure delay**: a node store with the sweeper running at its default interval; a user
  spends the last guess and gives up; the (fake) clock jumps past the grace at a random
  moment, and the wall time until the shares are erased is recorded. Also the time of one
  sweep pass over the whole population when nothing is due (the index scan every pass pays).
* **rotation cost**: ``--users`` live users (default 100 000) under one key generation that
  expires; the time of the rotation pass that re-wraps all of their version keys under the
  newest generation and destroys the old one, on SQLite and on PostgreSQL (a throwaway
  server), next to a same-run baseline: one ``get_user`` point read per row.
* **reader next to the writer** (SQLite): registration latency of other users while lockouts
  are erased, with and without a reader holding a read transaction for the whole run; the
  ratio is the figure (1.0: the reader costs the writer nothing).

    .venv/bin/python bench/erasure.py [--users 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test tree is a package: reuse its helpers

from pakr.node.keyrotation import KeyPolicy, rotate  # noqa: E402
from pakr.node.metrics import NodeMetrics  # noqa: E402
from pakr.node.store import open_store  # noqa: E402
from pakr.node.store.base import Store  # noqa: E402
from pakr.node.store.rows import u64, version_row  # noqa: E402
from pakr.node.store.schema import USERS, VERSIONS, column_list  # noqa: E402
from pakr.node.store.sealing import Sealer  # noqa: E402
from pakr.node.sweeper import DEFAULT_INTERVAL_SECONDS, Sweeper  # noqa: E402
from pakr.proto.messages import LOCKOUT_GRACE_SECONDS, UserRef  # noqa: E402
from tests.node.node_helpers import make_registration, wrong_recover2  # noqa: E402

NOW = 1_700_000_000.0
DAY = 86400.0
PEER = "bench"


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


async def registered(store: Store, name: str, *, max_guesses: int = 10, now: float = NOW) -> Any:
    user = UserRef("bench", name)
    reg = make_registration(user=user, max_guesses=max_guesses)
    await store.register_pending(user, reg.request, node=reg.node, now=now, peer=PEER)
    await store.commit(user, reg.version, now=now, peer=PEER)
    return reg


async def fill(url: str, sealer: Sealer, n: int) -> None:
    """``n`` committed users written straight into the database (valid, sealed rows)."""
    store = await open_store(url, sealer)
    try:
        template = await registered(store, "template")
        record = await store.get_user(template.user)
    finally:
        await store.close()
    assert record is not None and record.committed is not None
    users, versions = [], []
    for i in range(n):
        user = UserRef("bench", f"user-{i:07d}")
        rec = replace(record.committed, version=os.urandom(16))
        users.append((user.tenant, user.user_id, u64(0), NOW))
        versions.append(version_row(sealer, user, "committed", rec, now=NOW))
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite://") :], isolation_level=None)
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO users ({column_list(USERS)}) VALUES (?, ?, ?, ?)", users)
        marks = ", ".join("?" for _ in VERSIONS.columns)
        conn.executemany(
            f"INSERT INTO versions ({column_list(VERSIONS)}) VALUES ({marks})",
            versions,
        )
        conn.execute("COMMIT")
        conn.close()
        return
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY users ({column_list(USERS)}) FROM STDIN") as copy:
            for row in users:
                copy.write_row(row)
        with cur.copy(f"COPY versions ({column_list(VERSIONS)}) FROM STDIN") as copy:
            for row in versions:
                copy.write_row(row)


async def rotation_cost(url: str, keys_dir: Path, n: int) -> dict[str, float]:
    data_key = os.urandom(32)
    sealer = Sealer(data_key, keys_dir)
    await fill(url, sealer, n)
    store = await open_store(url, sealer)
    try:
        policy = KeyPolicy(roll_seconds=DAY, retention_seconds=7 * DAY)
        start = time.perf_counter()
        sample = [UserRef("bench", f"user-{i:07d}") for i in random.sample(range(n), 2000)]
        for user in sample:
            await store.get_user(user)
        read_each = (time.perf_counter() - start) / len(sample)
        await rotate(store, sealer.keys, policy, NOW + DAY)  # roll: generation 2
        start = time.perf_counter()
        report = await rotate(store, sealer.keys, policy, NOW + 7 * DAY + 1)
        seconds = time.perf_counter() - start
        assert report.rewrapped >= n and report.destroyed == [1], report
        return {
            "rows": report.rewrapped,
            "seconds": seconds,
            "seconds_per_100k": seconds / report.rewrapped * 100_000,
            "point_read_seconds_per_100k": read_each * 100_000,
        }
    finally:
        await store.close()


async def erasure_delay(url: str, keys_dir: Path, n: int, samples: int) -> dict[str, Any]:
    sealer = Sealer(os.urandom(32), keys_dir)
    await fill(url, sealer, n)
    store = await open_store(url, sealer)
    clock = FakeClock()
    sweeper = Sweeper(store, sealer.keys, KeyPolicy(), NodeMetrics(), clock=clock)
    try:
        start = time.perf_counter()
        await store.sweep(NOW, peer=PEER)
        idle_pass = time.perf_counter() - start
        delays = []
        sweeper.start()
        for i in range(samples):
            reg = await registered(store, f"gives-up-{i}", max_guesses=1, now=clock.now)
            await store.count_guess(
                reg.user, wrong_recover2(reg), nonce=os.urandom(16), now=clock.now, peer=PEER
            )
            await asyncio.sleep(random.uniform(0, sweeper.interval))
            clock.now += LOCKOUT_GRACE_SECONDS + 1
            start = time.perf_counter()
            while True:
                record = await store.get_user(reg.user)
                if record is not None and record.committed is not None and record.committed.locked:
                    break
                await asyncio.sleep(0.01)
            delays.append(time.perf_counter() - start)
        return {"interval": sweeper.interval, "idle_pass_seconds": idle_pass, "delays": delays}
    finally:
        await sweeper.stop()
        await store.close()


async def reader_latency(directory: Path, rounds: int) -> dict[str, float]:
    url = f"sqlite://{directory / 'node.db'}"
    store = await open_store(url, Sealer(os.urandom(32), directory / "keys"))
    try:

        async def run(tag: str) -> list[float]:
            took = []
            for i in range(rounds):
                victim = await registered(store, f"{tag}-victim-{i}", max_guesses=1)
                await store.count_guess(
                    victim.user, wrong_recover2(victim), nonce=os.urandom(16), now=NOW, peer=PEER
                )
                await store.sweep(NOW + LOCKOUT_GRACE_SECONDS + 1, peer=PEER)  # an erase
                start = time.perf_counter()
                await registered(store, f"{tag}-other-{i}")
                took.append(time.perf_counter() - start)
            return took

        baseline = await run("alone")
        reader = sqlite3.connect(directory / "node.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM versions").fetchone()
        try:
            with_reader = await run("reader")
        finally:
            reader.execute("COMMIT")
            reader.close()
    finally:
        await store.close()

    def p(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))]

    return {
        "baseline_p50_ms": p(baseline, 0.5) * 1e3,
        "baseline_p99_ms": p(baseline, 0.99) * 1e3,
        "reader_p50_ms": p(with_reader, 0.5) * 1e3,
        "reader_p99_ms": p(with_reader, 0.99) * 1e3,
        "p50_ratio": statistics.median(with_reader) / statistics.median(baseline),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--delay-samples", type=int, default=3)
    parser.add_argument("--reader-rounds", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pakr-erasure-") as tmp:
        base = Path(tmp)
        results["reader_sqlite"] = await reader_latency(base / "reader", args.reader_rounds)
        print("reader next to the writer (SQLite):", results["reader_sqlite"], flush=True)
        results["rotation_sqlite"] = await rotation_cost(
            f"sqlite://{base / 'rot.db'}", base / "rot-keys", args.users
        )
        print("rotation (SQLite):", results["rotation_sqlite"], flush=True)
        if not args.skip_postgres:
            from tests.postgres.pgserver import start_server

            server = start_server()
            try:
                url = server.create_database("erasure")
                results["rotation_postgresql"] = await rotation_cost(
                    url, base / "pg-keys", args.users
                )
                print("rotation (PostgreSQL):", results["rotation_postgresql"], flush=True)
            finally:
                server.stop()
        results["erasure_delay_sqlite"] = await erasure_delay(
            f"sqlite://{base / 'delay.db'}", base / "delay-keys", args.users, args.delay_samples
        )
        print(
            f"erasure delay after the grace (sweeper every {DEFAULT_INTERVAL_SECONDS:.0f} s):",
            results["erasure_delay_sqlite"],
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
