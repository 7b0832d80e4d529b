"""The storage contract, unchanged, against the PostgreSQL store (throwaway server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pakr.node.store.base import Store
from pakr.node.store.postgres import open_postgres_store
from pakr.node.store.sealing import Sealer
from tests.node.store_contract import StoreContract, StoreFactory
from tests.postgres.pg_fixtures import pg_database_url, pg_url, postgres_server

__all__ = ["pg_database_url", "pg_url", "postgres_server"]

pytestmark = pytest.mark.postgres


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store_factory(self, pg_url: str, tmp_path: Path) -> StoreFactory:
        async def factory(data_key: bytes) -> Store:
            store = await open_postgres_store(pg_url, Sealer(data_key, tmp_path / "keys"))
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
            return store

        return factory
