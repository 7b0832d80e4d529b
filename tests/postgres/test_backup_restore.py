"""``pakr node backup`` / ``restore``: SQLite → PostgreSQL → SQLite with sealed fields intact.

A SQLite node registers users over gRPC; its backup is restored into PostgreSQL, a node
serves from PostgreSQL and every user recovers. Restore refuses other nodes' backups, other
data keys, non-empty targets and altered or truncated files, and writes nothing then.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pakr.coordinator import cli
from pakr.node.backup import TABLES, backup_node, restore_node
from pakr.node.config import DataKeySource, load_config
from pakr.node.store.base import SCHEMA_VERSION
from pakr.node.store.postgres import open_postgres_store
from pakr.node.store.rows import VERSION_COLUMNS
from pakr.node.store.sealing import Sealer
from pakr.proto.errors import ConfigError
from pakr.proto.messages import UserRef
from pakr.proto.recover import finish_recover3
from tests.node.node_helpers import Registration, attempt, unlock, wrong_recover2

from .node_procs import NodeClient, NodeDir, Replica, init_node, registration_for

pytestmark = pytest.mark.postgres

USERS = [UserRef("acme", f"user{i}@example.com") for i in range(4)]


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run ``pakr node <argv>`` through the real command line."""
    assert cli.main(["node", *argv]) == 0
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


async def recover(client: NodeClient, reg: Registration) -> bytes:
    att = attempt(reg)
    reply = await client.recover2(reg.user, att.request)
    unlocked = unlock(att, reply)
    share = await client.recover3(reg.user, unlocked.requests[reg.node])
    return finish_recover3(unlocked, {reg.node: share}, threshold=1)


def sqlite_versions(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        cols = ", ".join(VERSION_COLUMNS)
        return [
            tuple(bytes(v) if isinstance(v, bytes | memoryview) else v for v in row)
            for row in conn.execute(f"SELECT {cols} FROM versions ORDER BY tenant, user_id")
        ]
    finally:
        conn.close()


def pg_versions(url: str) -> list[tuple[Any, ...]]:
    cols = ", ".join(VERSION_COLUMNS)
    with psycopg.connect(url) as conn:
        return [
            tuple(bytes(v) if isinstance(v, bytes | memoryview) else v for v in row)
            for row in conn.execute(f"SELECT {cols} FROM versions ORDER BY tenant, user_id")
        ]


@pytest.fixture
def sqlite_node(tmp_path: Path) -> tuple[NodeDir, list[Registration]]:
    """A SQLite node with registered users (one wrong guess spent on the first)."""
    node = init_node(tmp_path / "node")
    replica = Replica(node.replica_config("sqlite")).start()
    regs = [registration_for(node, u, secret=f"secret of {u.user_id}".encode()) for u in USERS]

    async def populate() -> None:
        client = NodeClient(node, replica.address)
        try:
            for reg in regs:
                await client.register(reg)
            await client.recover2(regs[0].user, wrong_recover2(regs[0]))
        finally:
            await client.close()

    try:
        asyncio.run(populate())
    finally:
        replica.stop()
    return node, regs


async def test_sqlite_to_postgres_and_back(
    sqlite_node: tuple[NodeDir, list[Registration]],
    pg_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    node, regs = sqlite_node
    out = tmp_path / "node.backup.jsonl"
    summary = run_cli("backup", "--config", str(node.config), "--out", str(out), capsys=capsys)
    assert summary["counts"] == {"users": 4, "versions": 4, "audit": 9}
    assert summary["source"] == "sqlite" and summary["node_id"] == node.node_id.hex()
    assert out.stat().st_mode & 0o777 == 0o600
    header = json.loads(out.read_text().splitlines()[0])
    assert header["schema_version"] == SCHEMA_VERSION and header["node_id"] == node.node_id.hex()
    for reg in regs:  # shares never appear unsealed in the file
        assert reg.request.oprf_key_share.encoded.hex() not in out.read_text()

    pg_config = node.replica_config("pg", storage=pg_url)
    restored = await asyncio.to_thread(
        run_cli, "restore", "--config", str(pg_config), "--in", str(out), capsys=capsys
    )
    assert restored["counts"] == summary["counts"]
    # sealed blobs moved byte for byte
    assert pg_versions(pg_url) == sqlite_versions(node.path / "node.db")

    replica = Replica(pg_config).start()
    client = NodeClient(node, replica.address)
    try:
        assert (await client.status(regs[0].user)).committed.guesses_remaining == 9
        for reg in regs:
            assert await recover(client, reg) == reg.secret
        assert (await client.status(regs[0].user)).committed.guesses_remaining == 10
    finally:
        await client.close()
        replica.stop()

    # and back into a fresh SQLite file from the PostgreSQL node
    back = tmp_path / "from-pg.jsonl"
    assert backup_node(load_config(pg_config), back).source == "postgresql"
    sqlite2 = node.replica_config("sqlite2", storage="sqlite:///node2.db")
    counts = (await asyncio.to_thread(restore_node, load_config(sqlite2), back)).counts
    assert counts["users"] == 4 and counts["audit"] > 9
    assert sqlite_versions(node.path / "node2.db") == pg_versions(pg_url)


def test_restore_refusals_write_nothing(
    sqlite_node: tuple[NodeDir, list[Registration]], pg_url: str, tmp_path: Path
) -> None:
    node, _ = sqlite_node
    out = tmp_path / "b.jsonl"
    backup_node(load_config(node.config), out)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        backup_node(load_config(node.config), out)
    target = load_config(node.replica_config("pg", storage=pg_url))

    # another node's identity
    other = init_node(tmp_path / "other", storage=pg_url)
    with pytest.raises(ConfigError, match="not of this node"):
        restore_node(load_config(other.config), out)

    # the same node id with another data key
    (node.path / "other.key").write_text("11" * 32)
    wrong_key = node.replica_config("wrongkey", storage=pg_url)
    other_key = DataKeySource(file=node.path / "other.key")
    replace(load_config(wrong_key), data_key=other_key).save()
    with pytest.raises(ConfigError, match="another data key"):
        restore_node(load_config(wrong_key), out)

    lines = out.read_bytes().splitlines(keepends=True)
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_bytes(b"".join(lines[:-1]))
    with pytest.raises(ConfigError, match="truncated"):
        restore_node(target, truncated)
    altered = tmp_path / "altered.jsonl"
    altered.write_bytes(b"".join(lines).replace(b'"guess_count":1', b'"guess_count":0', 1))
    assert altered.read_bytes() != out.read_bytes()
    with pytest.raises(ConfigError, match="checksum"):
        restore_node(target, altered)
    assert pg_versions(target.storage_url) == []

    assert restore_node(target, out).counts["users"] == 4
    with pytest.raises(ConfigError, match="empty database"):
        restore_node(target, out)


def test_both_backends_share_the_backup_columns(tmp_path: Path, pg_url: str) -> None:
    """Backup moves rows verbatim: the SQLite and PostgreSQL schemas must keep one column
    list (a change to either store's schema must change both and the backup format)."""
    node = init_node(tmp_path / "node")  # init migrates the SQLite database
    conn = sqlite3.connect(node.path / "node.db")
    try:
        for table, kinds in TABLES.items():
            names = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            assert names == list(kinds), table
    finally:
        conn.close()

    async def migrate() -> None:
        store = await open_postgres_store(pg_url, Sealer(bytes(32)))
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    with psycopg.connect(pg_url) as pg:
        for table, kinds in TABLES.items():
            rows = pg.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = %s AND table_schema = current_schema()"
                " ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            assert [r[0] for r in rows] == list(kinds), table
