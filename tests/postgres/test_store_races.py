"""PostgreSQL-specific store behaviour: several pools (as several replicas) racing on one DB."""

from __future__ import annotations

import asyncio
import os

import psycopg
import pytest

from pakr.node.store import open_store
from pakr.node.store.base import SCHEMA_VERSION, StoreError
from pakr.node.store.keys import KeyRing
from pakr.node.store.postgres import PostgresStore, open_postgres_store
from pakr.node.store.sealing import Sealer
from pakr.proto.errors import NodeRefusal
from tests.node.node_helpers import USER, make_registration, wrong_recover2

pytestmark = pytest.mark.postgres

NOW = 1_700_000_000.0
PEER = "ipv4:127.0.0.1:1"


async def _stores(url: str, key: bytes, n: int) -> list[PostgresStore]:
    keys = KeyRing(key)  # replicas share one key directory (here: one ring in memory)
    stores = [
        await open_postgres_store(url, Sealer(key, keys), max_connections=8) for _ in range(n)
    ]
    await asyncio.gather(*(s.migrate() for s in stores))
    return stores


async def test_concurrent_migrations_agree(pg_url: str) -> None:
    key = os.urandom(32)
    stores = [await open_postgres_store(pg_url, Sealer(key)) for _ in range(4)]
    try:
        versions = await asyncio.gather(*(s.migrate() for s in stores))
        assert versions == [SCHEMA_VERSION] * 4
        assert await stores[0].schema_version() == SCHEMA_VERSION
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM meta").fetchone() == (1,)
    finally:
        for s in stores:
            await s.close()


async def test_guesses_from_several_pools_never_exceed_the_limit(pg_url: str) -> None:
    key = os.urandom(32)
    stores = await _stores(pg_url, key, 3)
    try:
        reg = make_registration(max_guesses=10)
        await stores[0].register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
        await stores[1].commit(USER, reg.version, now=NOW, peer=PEER)

        async def one(i: int) -> str:
            try:
                res = await stores[i % 3].count_guess(
                    USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
                )
            except NodeRefusal as exc:
                return exc.kind.name
            return "counted" if res.counted else "replay"

        outcomes = await asyncio.gather(*(one(i) for i in range(150)))
        assert outcomes.count("counted") == 10
        assert outcomes.count("NO_GUESSES") == 140
        user = await stores[2].get_user(USER)
        assert user is not None and user.committed is not None
        assert user.committed.guess_count == 10
    finally:
        for s in stores:
            await s.close()


async def test_guesses_racing_a_commit_are_never_lost(pg_url: str) -> None:
    """Register3 rewrites the user's rows while guesses on the pending version count: every
    counted guess must still be in the committed version's count afterwards."""
    key = os.urandom(32)
    stores = await _stores(pg_url, key, 2)
    try:
        reg = make_registration(max_guesses=100)
        await stores[0].register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)

        async def guess() -> bool:
            res = await stores[0].count_guess(
                USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
            )
            return res.counted

        async def commit_midway() -> bool:
            await asyncio.sleep(0.01)
            return await stores[1].commit(USER, reg.version, now=NOW, peer=PEER)

        results = await asyncio.gather(*(guess() for _ in range(40)), commit_midway())
        assert results[-1] is True
        counted = sum(1 for r in results[:-1] if r)
        assert counted == 40
        user = await stores[1].get_user(USER)
        assert user is not None and user.committed is not None and user.pending is None
        assert user.committed.guess_count == 40
    finally:
        for s in stores:
            await s.close()


async def test_unreachable_server_is_a_clear_error_without_the_password(tmp_path: object) -> None:
    url = "postgresql://pakr:hunter2secret@/nodb?host=/nonexistent-dir&port=1&connect_timeout=1"
    with pytest.raises(StoreError) as info:
        await open_store(url, Sealer(os.urandom(32)))
    assert "hunter2secret" not in str(info.value)
    assert "cannot connect to PostgreSQL" in str(info.value)


async def test_rows_hold_sealed_shares_only(pg_url: str) -> None:
    key = os.urandom(32)
    (store,) = await _stores(pg_url, key, 1)
    try:
        reg = make_registration()
        await store.register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
    finally:
        await store.close()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT sealed_oprf_key_share, sealed_secret_share, sealed_unlock_tag FROM versions"
        ).fetchone()
    assert row is not None
    k, s, tag = (bytes(v) for v in row)
    assert reg.request.oprf_key_share.encoded not in k and len(k) == 12 + 32 + 16
    assert reg.request.secret_share.encoded not in s
    assert reg.request.unlock_tag not in tag
