"""Chaos soak (issue 14): a 3-of-5 cluster (r = 4) under concurrent users and node churn.

Workers register, recover (right and wrong passwords), change passwords and delete against a
model of what each user should have (:mod:`tests.soak.model`); two workers share some users
(one changes their password while the other recovers). A chaos thread SIGKILLs, restarts
and SIGSTOPs nodes, never more than n - t down at once. At the end every node is restarted
and the soak checks every user against the model (twice: the first login heals), that every
live user converged (same committed version on every node, its own guess limit, no guess
counted after the login), and every database's integrity.

``python -m tests.soak.soak --seconds 600 --store sqlite`` (``make soak`` runs both stores);
``tests/soak/test_soak.py`` runs the short form in ``make test``. Exit status 1 on any
violation; the figures are printed as one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import signal
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pakr
from pakr.coordinator.localcluster import LocalCluster
from pakr.node.config import RateLimits, load_config
from pakr.node.store.rows import from_u64
from tests.soak.model import Model, UserModel
from tests.soak.netns import NetnsCluster
from tests.soak.ops import Ops

N, T, R = 5, 3, 4
# Per-user limits the soak's busy users never hit (the default peer limits stay).
LIMITS = RateLimits(user_rate=500.0, user_burst=1000)


@dataclass
class ChaosFigures:
    kills: int = 0
    sigstops: int = 0
    restarts: int = 0
    cuts: int = 0  # network links cut (netns variant)
    max_down: int = 0


class FillCounter(logging.Handler):
    """Counts the SDK's "missing copies filled" log lines (one per committed fill)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.fills = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "missing copies filled" in record.getMessage():
            self.fills += 1


@dataclass
class Soak:
    directory: Path
    store: str = "sqlite"
    seconds: float = 60.0
    workers: int = 4
    users_per_worker: int = 10
    shared: int = 4
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**32))
    model: Model = field(default_factory=Model)
    chaos: ChaosFigures = field(default_factory=ChaosFigures)
    urls: dict[int, str] = field(default_factory=dict)
    pg: Any = None  # a running tests.postgres.pgserver.PgServer to use (else one is started)
    netns: bool = False  # nodes as separate hosts (network namespaces); chaos also cuts links

    # ---------------------------------------------------------------- cluster

    def make_cluster(self) -> LocalCluster:
        if not self.netns:
            return LocalCluster(
                self.directory, nodes=N, threshold=T, register_threshold=R, rate_limits=LIMITS
            )
        cluster = NetnsCluster(
            self.directory, nodes=N, threshold=T, register_threshold=R, rate_limits=LIMITS
        )
        try:
            cluster.wire()
        except BaseException:
            cluster.unwire()
            raise
        return cluster

    def start(self, cluster: LocalCluster) -> LocalCluster:
        cluster.create()
        if self.store == "postgres":
            for node in cluster.nodes:
                config = load_config(node.config)
                replace(config, storage_url=self.urls[node.index]).save()
        return cluster.start()

    def client(self, cluster: LocalCluster) -> pakr.Client:
        return pakr.Client.from_manifest(
            cluster.manifest_path,
            tenant=cluster.tenant,
            token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
            operator_key=cluster.operator_public_key(),
            deadline=3.0,
        )

    # ---------------------------------------------------------------- chaos

    def chaos_loop(self, cluster: LocalCluster, stop: threading.Event) -> None:
        rng = random.Random(self.seed ^ 0xC4A05)
        killed: set[int] = set()
        stopped: dict[int, float] = {}
        cut: dict[int, float] = {}
        while not stop.wait(rng.uniform(0.3, 1.5)):
            now = time.monotonic()
            for i, until in list(stopped.items()):
                if now >= until:
                    cluster.kill_node(i, signal.SIGCONT, wait=False)
                    del stopped[i]
            for i, until in list(cut.items()):
                if now >= until:
                    assert isinstance(cluster, NetnsCluster)
                    cluster.mend(i)
                    del cut[i]
            down = killed | set(stopped) | set(cut)
            roll = rng.random()
            if len(down) < N - T and roll < 0.5:
                i = rng.choice([j for j in range(1, N + 1) if j not in down])
                if roll < 0.3 and isinstance(cluster, NetnsCluster) and rng.random() < 0.5:
                    cluster.cut(i)
                    cut[i] = now + rng.uniform(0.5, 4.0)
                    self.chaos.cuts += 1
                elif roll < 0.3:
                    cluster.kill_node(i, signal.SIGKILL)
                    killed.add(i)
                    self.chaos.kills += 1
                else:
                    cluster.kill_node(i, signal.SIGSTOP, wait=False)
                    stopped[i] = now + rng.uniform(0.5, 4.0)
                    self.chaos.sigstops += 1
            elif killed and roll < 0.9:
                i = rng.choice(sorted(killed))
                try:
                    cluster.start_node(i)
                except pakr.PakrError as error:
                    self.model.violation(f"node {i} did not restart: {error}")
                killed.discard(i)
                self.chaos.restarts += 1
            self.chaos.max_down = max(self.chaos.max_down, len(killed | set(stopped) | set(cut)))
        for i in stopped:
            cluster.kill_node(i, signal.SIGCONT, wait=False)
        for i in cut:
            assert isinstance(cluster, NetnsCluster)
            cluster.mend(i)
        for i in sorted(killed):
            cluster.start_node(i)
            self.chaos.restarts += 1

    # ---------------------------------------------------------------- workers

    def worker(self, cluster: LocalCluster, w: int, stop: threading.Event) -> None:
        rng = random.Random(self.seed + w)
        own = [u for u in self.model.users.values() if u.user_id.startswith(f"w{w}-")]
        shared = [u for u in self.model.users.values() if u.user_id.startswith("shared-")]
        with self.client(cluster) as client:
            ops = Ops(self.model, client, rng)
            while not stop.is_set():
                if w in (0, 1) and shared and rng.random() < 0.3:
                    user = rng.choice(shared)
                    if w == 0:
                        ops.change_password(user) if rng.random() < 0.5 else ops.recover(user)
                    else:
                        ops.recover(user)
                    continue
                ops.step(rng.choice(own))

    # ---------------------------------------------------------------- checks

    def final_check(self, cluster: LocalCluster) -> None:
        with self.client(cluster) as client:
            ops = Ops(self.model, client, random.Random(self.seed))
            for round_ in (1, 2):
                for user in self.model.users.values():
                    ops.final(user, strict=round_ == 2)
            for _ in range(3):  # a login whose slow nodes answered late heals on the next
                unconverged = self.unconverged(cluster)
                for user_id in unconverged:
                    ops.final(self.model.users[user_id], strict=True)
            for user_id, why in self.unconverged(cluster).items():
                if "newer pending" in why:
                    # safe by design: the fill aborts on anything newer (an interrupted
                    # registration's pending, possibly an earlier interrupted fill's)
                    self.model.note("not converged: a newer uncommitted pending blocks the fill")
                else:
                    self.model.violation(f"{user_id} did not converge: {why}")
        for index in range(1, N + 1):
            for problem in self.integrity(cluster, index):
                self.model.violation(f"node {index}: {problem}")

    def rows(self, cluster: LocalCluster, index: int) -> list[dict[str, Any]]:
        sql = (
            "SELECT user_id, slot, version, epoch, max_guesses, guess_count,"
            " sealed_oprf_key_share IS NULL AS locked FROM versions WHERE tenant = {p}"
        )
        if self.store == "postgres":
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.urls[index], row_factory=dict_row) as conn:
                return list(conn.execute(sql.format(p="%s"), (cluster.tenant,)).fetchall())
        path = cluster.node(index).dir / "node.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql.format(p="?"), (cluster.tenant,))]
        finally:
            conn.close()

    def unconverged(self, cluster: LocalCluster) -> dict[str, str]:
        views = {i: self.rows(cluster, i) for i in range(1, N + 1)}
        out: dict[str, str] = {}
        for user in self.model.users.values():
            if not user.definite:
                continue
            held: list[dict[str, Any] | None] = []
            shape = []
            for rows in views.values():
                mine = {r["slot"]: r for r in rows if r["user_id"] == user.user_id}
                held.append(mine.get("committed"))
                shape.append(
                    "/".join(
                        f"{slot[0]}:{bytes(r['version']).hex()[:4]}" for slot, r in mine.items()
                    )
                    or "-"
                )
            versions = {bytes(r["version"]) if r else None for r in held}
            committed_epochs = [from_u64(r["epoch"]) for r in held if r]
            pendings = [
                from_u64(r["epoch"])
                for rows in views.values()
                for r in rows
                if r["user_id"] == user.user_id and r["slot"] == "pending"
            ]
            newer = bool(pendings) and max(pendings) > max(committed_epochs, default=0)
            if len(versions) != 1 or None in versions:
                why = "newer pending; " if newer else ""
                out[user.user_id] = f"{why}committed versions differ: {' '.join(shape)}"
            elif any(r["locked"] or r["guess_count"] for r in held if r):
                out[user.user_id] = "a copy is locked or has guesses counted after the login"
            elif any(r["max_guesses"] != user.max_guesses for r in held if r):
                out[user.user_id] = f"guess limit is not {user.max_guesses} on every node"
        return out

    def integrity(self, cluster: LocalCluster, index: int) -> list[str]:
        problems = []
        if self.store == "sqlite":
            path = cluster.node(index).dir / "node.db"
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                conn.close()
            if result != "ok":
                problems.append(f"integrity_check: {result}")
        for row in self.rows(cluster, index):
            if not 0 <= row["guess_count"] <= row["max_guesses"]:
                problems.append(f"{row['user_id']}: guess_count {row['guess_count']} out of range")
        return problems

    # ---------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        server = None
        if self.store == "postgres":
            from tests.postgres.pgserver import start_server

            if self.pg is None:
                server = self.pg = start_server()
            self.urls = {i: self.pg.create_database(f"soak{i}") for i in range(1, N + 1)}
        counter = FillCounter()
        logging.getLogger("pakr").addHandler(counter)
        logging.getLogger("pakr").setLevel(logging.INFO)
        cluster = None
        try:
            cluster = self.make_cluster()
            self.start(cluster)
            self.populate(cluster)
            stop, chaos_stop = threading.Event(), threading.Event()
            threads = [
                threading.Thread(target=self.worker, args=(cluster, w, stop), daemon=True)
                for w in range(self.workers)
            ]
            chaos = threading.Thread(target=self.chaos_loop, args=(cluster, chaos_stop))
            for thread in [*threads, chaos]:
                thread.start()
            time.sleep(self.seconds)
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
            chaos_stop.set()
            chaos.join(timeout=120)
            cluster.wait_healthy()
            fills_during = counter.fills
            self.final_check(cluster)
        finally:
            logging.getLogger("pakr").removeHandler(counter)
            if cluster is not None:
                for i in range(1, N + 1):
                    with contextlib.suppress(Exception):
                        cluster.kill_node(i, signal.SIGCONT, wait=False)
                cluster.stop()
                if isinstance(cluster, NetnsCluster):
                    cluster.unwire()
            if server is not None:
                server.stop()
        return {
            "store": self.store,
            "seconds": self.seconds,
            "seed": self.seed,
            "operations": self.model.operations,
            "outcomes": dict(sorted(self.model.ops.items())),
            "kills": self.chaos.kills,
            "sigstops": self.chaos.sigstops,
            "restarts": self.chaos.restarts,
            "link_cuts": self.chaos.cuts,
            "netns": self.netns,
            "max_down": self.chaos.max_down,
            "fills_during_chaos": fills_during,
            "fills_total": counter.fills,
            "notes": dict(self.model.notes),
            "violations": self.model.violations,
        }

    def populate(self, cluster: LocalCluster) -> None:
        rng = random.Random(self.seed)
        names = [f"w{w}-{u}" for w in range(self.workers) for u in range(self.users_per_worker)]
        names += [f"shared-{u}" for u in range(self.shared)]
        with self.client(cluster) as client:
            for name in names:
                user = UserModel(name)
                password, secret = os.urandom(8).hex().encode(), os.urandom(16)
                user.max_guesses = rng.randint(6, 10)
                client.register(name, password, secret, max_guesses=user.max_guesses)
                user.settle(password, secret, user.max_guesses)
                self.model.users[name] = user


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--netns", action="store_true", help="nodes in network namespaces; also cut links"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pakr-soak-") as tmp:
        soak = Soak(
            Path(tmp),
            store=args.store,
            seconds=args.seconds,
            workers=args.workers,
            netns=args.netns,
        )
        if args.seed is not None:
            soak.seed = args.seed
        figures = soak.run()
    print(json.dumps(figures, indent=2, default=str))
    return 1 if figures["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
