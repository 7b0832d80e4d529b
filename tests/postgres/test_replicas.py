"""Three ``pakr node serve`` replicas of one node identity on one PostgreSQL database.

200 concurrent wrong-password attempts (Recover2, then a Recover3 with a wrong proof on
another replica) spread round-robin over the replicas spend exactly ``max_guesses``; the
rest get NoGuesses or Locked, and the version ends locked with its shares erased.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pakr.node.store.base import SCHEMA_VERSION
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.messages import Recover3, UserRef
from tests.node.node_helpers import ANY_REPLY_KEY, attempt

from .node_procs import (
    NODE_CMD,
    NodeClient,
    NodeDir,
    Replica,
    init_node,
    registration_for,
    run_node_cmd,
)
from .pgserver import PgServer

pytestmark = pytest.mark.postgres

REPLICAS = 3
ATTEMPTS = 200
MAX_GUESSES = 10
USER = UserRef("acme", "target@example.com")


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[tuple[NodeDir, list[Replica]]]:
    node = init_node(tmp_path / "node", storage=pg_url)
    assert run_node_cmd("migrate", "--config", str(node.config)) == {
        "schema_version": SCHEMA_VERSION
    }
    assert run_node_cmd("migrate", "--config", str(node.config)) == {
        "schema_version": SCHEMA_VERSION
    }
    running: list[Replica] = []
    try:
        for i in range(REPLICAS):
            running.append(Replica(node.replica_config(f"replica{i}")).start())
        yield node, running
    finally:
        for replica in running:
            replica.stop()


async def test_guesses_spread_over_replicas_spend_exactly_the_limit(
    replicas: tuple[NodeDir, list[Replica]], pg_url: str
) -> None:
    node, running = replicas
    assert len({r.address for r in running}) == REPLICAS
    clients = [NodeClient(node, r.address) for r in running]
    try:
        reg = registration_for(node, USER, max_guesses=MAX_GUESSES)
        await clients[0].register(reg)
        status = await clients[1].status(USER)
        assert status.committed.guesses_remaining == MAX_GUESSES

        async def one(i: int) -> str:
            att = attempt(reg, right=False)
            try:
                await clients[i % REPLICAS].recover2(USER, att.request)
            except NodeRefusal as exc:
                return exc.kind.name
            wrong = Recover3(reg.version, att.attempt_id, os.urandom(32), ANY_REPLY_KEY)
            try:
                await clients[(i + 1) % REPLICAS].recover3(USER, wrong)
            except NodeRefusal as exc:
                # LOCKED: another attempt's wrong Recover3 already locked (erased) the version
                assert exc.kind in (
                    ErrorKind.BAD_UNLOCK_TAG,
                    ErrorKind.STALE_ATTEMPT,
                    ErrorKind.LOCKED,
                )
            return "counted"

        outcomes = await asyncio.gather(*(one(i) for i in range(ATTEMPTS)))
        assert outcomes.count("counted") == MAX_GUESSES
        refused = [o for o in outcomes if o != "counted"]
        assert len(refused) == ATTEMPTS - MAX_GUESSES
        assert set(refused) <= {"NO_GUESSES", "LOCKED"}

        # the last counted attempt's wrong Recover3 locked the version on every replica
        for client in clients:
            with pytest.raises(NodeRefusal) as info:
                await client.recover2(USER, attempt(reg).request)  # even the right password
            assert info.value.kind is ErrorKind.LOCKED
            locked = (await client.status(USER)).committed
            assert locked.locked and locked.guesses_remaining == 0
    finally:
        for client in clients:
            await client.close()

    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT guess_count, sealed_oprf_key_share, sealed_secret_share, encrypted_secret"
            " FROM versions"
        ).fetchone()
        assert row == (MAX_GUESSES, None, None, None)
        ops = dict(conn.execute("SELECT op, count(*) FROM audit GROUP BY op").fetchall())
    assert ops["guess_used"] == MAX_GUESSES and ops["locked"] == 1


def test_serve_with_an_unreachable_database_exits_with_the_reason(
    tmp_path: Path, postgres_server: PgServer
) -> None:
    missing = postgres_server.url("no_such_database")
    node = init_node(tmp_path / "node", storage=missing)
    done = subprocess.run(
        [*NODE_CMD, "serve", "--config", str(node.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "cannot connect to PostgreSQL" in done.stderr
    assert "no_such_database" in done.stderr and "Traceback" not in done.stderr
