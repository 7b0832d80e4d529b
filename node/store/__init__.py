"""Node storage backends behind one :class:`~pakr.node.store.base.Store` protocol.

:func:`open_store` picks the backend from the storage URL: ``sqlite:///`` (embedded default)
or ``postgresql://`` (``pakr.node.store.postgres``, which must expose
``async def open_postgres_store(url: str, sealer: Sealer) -> Store``).
"""

from __future__ import annotations

import importlib

from pakr.node.config import sqlite_path
from pakr.node.store.base import Store, StoreError
from pakr.node.store.sealing import Sealer
from pakr.proto.errors import ConfigError

__all__ = ["Store", "StoreError", "open_store"]


async def open_store(url: str, sealer: Sealer, *, migrate: bool = True) -> Store:
    """Open (and by default migrate) the store named by a resolved storage URL."""
    store: Store
    if url.startswith("sqlite:///"):
        from pakr.node.store.sqlite import SqliteStore

        store = SqliteStore(sqlite_path(url), sealer)
    elif url.startswith(("postgresql://", "postgres://")):
        try:
            module = importlib.import_module("pakr.node.store.postgres")
        except ModuleNotFoundError as exc:
            if exc.name != "pakr.node.store.postgres":
                raise
            raise ConfigError(
                "storage.url names PostgreSQL but this build has no PostgreSQL store"
            ) from None
        store = await module.open_postgres_store(url, sealer)
    else:
        raise ConfigError("storage.url must start with sqlite:/// or postgresql://")
    if migrate:
        try:
            await store.migrate()
        except BaseException:
            await store.close()
            raise
    return store
