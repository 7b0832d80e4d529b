"""The schema migration, written once for both stores: DDL derived from
:mod:`pakr.node.store.schema`, plus the one data migration (schema 3 re-seals rows written
before key generations under per-version keys, so key destruction erases them too)."""

from __future__ import annotations

import logging
import time

from pakr.node.store import schema
from pakr.node.store.base import SCHEMA_VERSION, StoreError
from pakr.node.store.rows import version_record, version_row
from pakr.node.store.schema import Dialect
from pakr.node.store.sealing import Sealer
from pakr.node.store.transactions import VERSION_UPSERT, Fetch, Program, Q
from pakr.proto.messages import UserRef

log = logging.getLogger("pakr.node.store")

MIGRATION_LOCK_KEY = 0x70616B72_00000001  # pg_advisory_xact_lock key: "pakr" + schema


def migrate(dialect: Dialect, sealer: Sealer) -> Program[int]:
    if dialect is Dialect.POSTGRESQL:  # replicas starting together migrate once
        yield Q("SELECT pg_advisory_xact_lock(:k)", {"k": MIGRATION_LOCK_KEY}, Fetch.ONE)
    yield Q("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = yield Q("SELECT version FROM schema_version", fetch=Fetch.ONE)
    current = 0 if row is None else int(row["version"])
    if row is None:
        yield Q("INSERT INTO schema_version (version) VALUES (0)")
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema {current} is newer than this node's {SCHEMA_VERSION}; upgrade pakr"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in schema.migration(version, dialect):
            yield Q(statement)
        yield Q("UPDATE schema_version SET version = :v", {"v": version})
        log.info("migrated node database schema to version %d", version)
    check = yield Q("SELECT value FROM meta WHERE key = 'data_key_check'", fetch=Fetch.ONE)
    if check is None:
        sealed = sealer.seal_key_check()
        yield Q("INSERT INTO meta (key, value) VALUES ('data_key_check', :v)", {"v": sealed})
    else:
        sealer.check_key(bytes(check["value"]))
    if current < KEYED_SCHEMA <= SCHEMA_VERSION:
        yield from reseal_legacy(sealer)
    return SCHEMA_VERSION


KEYED_SCHEMA = 3  # versions sealed under wrapped per-version keys


def reseal_legacy(sealer: Sealer) -> Program[None]:
    """Schema 3 data migration: rows written before key generations (sealed directly under
    the data key) are re-sealed under fresh version keys, so key destruction erases them too.
    Runs inside the migration's transaction (after the data key was checked)."""
    rows = yield Q(
        "SELECT * FROM versions WHERE key_generation IS NULL AND sealed_oprf_key_share IS NOT NULL",
        fetch=Fetch.ALL,
    )
    now = time.time()
    for row in rows:
        user = UserRef(tenant=row["tenant"], user_id=row["user_id"])
        record = version_record(sealer, user, row)
        values = version_row(sealer, user, row["slot"], record, locked_at=row["locked_at"], now=now)
        yield Q(VERSION_UPSERT, dict(zip(schema.VERSION_COLUMNS, values, strict=True)))
    if rows:
        log.info("re-sealed %d versions under per-version keys", len(rows))
