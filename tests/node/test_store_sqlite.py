"""The storage contract against the SQLite store, plus SQLite-specific behaviour."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pakr.node.store.base import SCHEMA_VERSION, Store
from pakr.node.store.sealing import Sealer
from pakr.node.store.sqlite import SqliteStore
from tests.node.node_helpers import USER, make_registration, wrong_recover2
from tests.node.store_contract import NOW, PEER, StoreContract, StoreFactory
from tests.node.store_contract_erasure import ErasureContract, Raw


class TestSqliteStore(StoreContract, ErasureContract):
    @pytest.fixture
    def keys_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "keys"

    @pytest.fixture
    def raw(self, tmp_path: Path) -> Raw:
        def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            conn = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
            conn.row_factory = sqlite3.Row
            try:
                return [dict(row) for row in conn.execute(sql, params).fetchall()]
            finally:
                conn.close()

        return run

    @pytest.fixture
    def store_factory(self, tmp_path: Path, keys_dir: Path) -> StoreFactory:
        async def factory(data_key: bytes) -> Store:
            store = SqliteStore(tmp_path / "node.db", Sealer(data_key, keys_dir))
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
            return store

        return factory


async def test_group_commit_batches_concurrent_guesses(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db", Sealer(os.urandom(32)))
    try:
        await store.migrate()
        reg = make_registration(max_guesses=100)
        await store.register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
        commits_before = store.commit_count
        await asyncio.gather(
            *(
                store.count_guess(
                    USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
                )
                for _ in range(100)
            )
        )
        commits = store.commit_count - commits_before
        assert commits < 50, f"100 concurrent guesses took {commits} commits"
    finally:
        await store.close()


async def test_a_lone_write_commits_inline_and_a_refused_one_changes_nothing(
    tmp_path: Path,
) -> None:
    from pakr.node.store import sqlite as sqlite_store
    from pakr.proto.errors import NodeRefusal

    store = SqliteStore(tmp_path / "node.db", Sealer(os.urandom(32)))
    try:
        await store.migrate()
        reg = make_registration(max_guesses=1)
        await asyncio.sleep(sqlite_store.INLINE_IDLE_SECONDS)
        inline_before = store._db.inline
        await store.register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
        assert store._db.inline == inline_before + 1  # idle: committed without the DB thread
        await asyncio.sleep(sqlite_store.INLINE_IDLE_SECONDS)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        before = await store.get_user(USER)
        await asyncio.sleep(sqlite_store.INLINE_IDLE_SECONDS)
        with pytest.raises(NodeRefusal):  # no guesses left: refused inline, rolled back
            await store.count_guess(
                USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
            )
        assert await store.get_user(USER) == before
        assert store._db.inline == inline_before + 3
    finally:
        await store.close()


async def test_wal_and_full_sync(tmp_path: Path) -> None:
    import sqlite3

    store = SqliteStore(tmp_path / "node.db", Sealer(os.urandom(32)))
    await store.migrate()
    await store.close()
    conn = sqlite3.connect(tmp_path / "node.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_schema_2_rows_are_resealed_under_version_keys(tmp_path: Path) -> None:
    """A database from before key generations (schema 2, shares sealed directly under the
    data key) migrates to version keys, so key destruction erases its users too."""
    from dataclasses import replace as dc_replace

    from pakr.node.store import schema
    from pakr.node.store.rows import version_row

    data_key = os.urandom(32)
    sealer = Sealer(data_key, tmp_path / "keys")
    conn = sqlite3.connect(tmp_path / "node.db", isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version (version) VALUES (2)")
    for version in (1, 2):
        for statement in schema.migration(version, schema.Dialect.SQLITE):
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('data_key_check', ?)", (sealer.seal_key_check(),))
    reg = make_registration()
    record = await _record_of(tmp_path / "scratch", reg)
    sealed_row = version_row(sealer, USER, "committed", record)
    row = dict(zip(schema.VERSION_COLUMNS, sealed_row, strict=True))
    legacy = sealer.open_version_key(USER, reg.version, None, None)  # the data key itself
    shares = record.shares
    assert shares is not None
    row.update(
        sealed_oprf_key_share=legacy.seal("oprf_key_share", shares.oprf_key_share.encoded),
        sealed_secret_share=legacy.seal("secret_share", shares.secret_share.encoded),
        sealed_unlock_tag=legacy.seal("unlock_tag", shares.unlock_tag),
    )
    del row["key_generation"], row["wrapped_key"]
    conn.execute(
        "INSERT INTO users VALUES (?, ?, ?, ?)", (USER.tenant, USER.user_id, bytes(8), NOW)
    )
    conn.execute(
        f"INSERT INTO versions ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        list(row.values()),
    )
    conn.close()
    store = SqliteStore(tmp_path / "node.db", sealer)
    try:
        assert await store.migrate() == SCHEMA_VERSION
        user = await store.get_user(USER)
        assert user is not None and user.committed == dc_replace(record, attempt=None)
        assert await store.key_generation_uses() == {1: 1}  # now under a generation
    finally:
        await store.close()


async def _record_of(directory: Path, reg: Any) -> Any:
    store = SqliteStore(directory / "node.db", Sealer(os.urandom(32), directory / "keys"))
    try:
        await store.migrate()
        await store.register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
        await store.commit(USER, reg.version, now=NOW, peer=PEER)
        user = await store.get_user(USER)
        assert user is not None
        return user.committed
    finally:
        await store.close()
