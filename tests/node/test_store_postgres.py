"""The storage contract, unchanged, against the PostgreSQL store (throwaway server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pakr.node.store.base import Store
from pakr.node.store.postgres import open_postgres_store, pg_sql
from pakr.node.store.sealing import Sealer
from tests.node.store_contract import StoreContract, StoreFactory
from tests.node.store_contract_erasure import ErasureContract, Raw
from tests.postgres.pg_fixtures import pg_database_url, pg_url, postgres_server

__all__ = ["pg_database_url", "pg_url", "postgres_server"]

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreContract, ErasureContract):
    @pytest.fixture
    def keys_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "keys"

    @pytest.fixture
    def raw(self, pg_url: str) -> Raw:
        def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            with psycopg.connect(pg_url, autocommit=True, row_factory=dict_row) as conn:
                cur = conn.execute(pg_sql(sql), params)
                return list(cur.fetchall()) if cur.description else []

        return run

    @pytest.fixture
    def store_factory(self, pg_url: str, keys_dir: Path) -> StoreFactory:
        async def factory(data_key: bytes) -> Store:
            store = await open_postgres_store(pg_url, Sealer(data_key, keys_dir))
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
            return store

        return factory
