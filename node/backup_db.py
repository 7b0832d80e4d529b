"""Raw row access to a node database of either backend, for backup and restore.

Both backends hold the same tables and columns (:mod:`pakr.node.store.schema`); a backup
reads and a restore writes rows as stored (sealed values and wrapped keys untouched), so
this talks to ``sqlite3`` and ``psycopg`` directly rather than through the Store protocol.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql

from pakr.node.config import sqlite_path
from pakr.node.store.base import StoreError
from pakr.node.store.postgres import redact_url
from pakr.node.store.schema import BACKUP_TABLES
from pakr.proto.errors import ConfigError

# Column kinds, per table, in the order rows are written (schema.py declares them once).
TABLES: dict[str, dict[str, str]] = {
    table.name: {c.name: c.kind.value for c in table.columns} for table in BACKUP_TABLES
}
# Columns that may be NULL (every other one must hold a value of its kind).
NULLABLE = frozenset(c.name for table in BACKUP_TABLES for c in table.columns if c.nullable)
_GENERATIONS = "SELECT DISTINCT key_generation FROM versions WHERE key_generation IS NOT NULL"
ORDER_BY = {table.name: ", ".join(table.order_by) for table in BACKUP_TABLES}


class Database(Protocol):
    """Raw row access to a node database of either backend (one transaction)."""

    source: str

    def schema_version(self) -> int: ...

    def key_check(self) -> bytes | None: ...

    def key_generations(self) -> list[int]: ...

    def rows(self, table: str) -> Iterator[Sequence[Any]]: ...

    def is_empty(self) -> bool: ...

    def insert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def finish_restore(self) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


class SqliteDatabase:
    source = "sqlite"

    def __init__(self, path: Path, *, write: bool) -> None:
        if not path.exists():
            raise ConfigError(f"SQLite database {path} does not exist")
        mode = "rw" if write else "ro"
        try:
            self._conn = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            if write:
                self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {path}: {exc}") from None

    def schema_version(self) -> int:
        try:
            row = self._conn.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError:
            return 0
        return 0 if row is None else int(row[0])

    def key_check(self) -> bytes | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'data_key_check'").fetchone()
        return None if row is None else bytes(row[0])

    def key_generations(self) -> list[int]:
        return sorted(int(row[0]) for row in self._conn.execute(_GENERATIONS))

    def rows(self, table: str) -> Iterator[Sequence[Any]]:
        columns = ", ".join(TABLES[table])
        yield from self._conn.execute(
            f"SELECT {columns} FROM {table} ORDER BY {ORDER_BY[table]}"  # noqa: S608 - constants
        )

    def is_empty(self) -> bool:
        return all(
            self._conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is None  # noqa: S608
            for t in TABLES
        )

    def insert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        columns = ", ".join(TABLES[table])
        marks = ", ".join("?" for _ in TABLES[table])
        self._conn.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - constants
            rows,
        )

    def finish_restore(self) -> None:
        """Nothing to do: AUTOINCREMENT follows the largest id inserted."""

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        self._conn.close()


class PostgresDatabase:
    source = "postgresql"

    def __init__(self, url: str, *, write: bool) -> None:
        try:
            self._conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {type(exc).__name__}"
            ) from None
        if write:
            # Keep a node that might be serving this database out until the restore commits.
            self._conn.execute("LOCK TABLE users, versions, audit IN EXCLUSIVE MODE")
        else:
            # One consistent snapshot while the node keeps serving.
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def schema_version(self) -> int:
        row = self._conn.execute("SELECT to_regclass('schema_version')").fetchone()
        if row is None or row[0] is None:
            return 0
        found = self._conn.execute("SELECT version FROM schema_version").fetchone()
        return 0 if found is None else int(found[0])

    def key_check(self) -> bytes | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'data_key_check'").fetchone()
        return None if row is None else bytes(row[0])

    def key_generations(self) -> list[int]:
        return sorted(int(row[0]) for row in self._conn.execute(_GENERATIONS).fetchall())

    def rows(self, table: str) -> Iterator[Sequence[Any]]:
        query = sql.SQL("SELECT {columns} FROM {table} ORDER BY {order}").format(
            columns=sql.SQL(", ").join(map(sql.Identifier, TABLES[table])),
            table=sql.Identifier(table),
            order=sql.SQL(", ").join(sql.Identifier(c.strip()) for c in ORDER_BY[table].split(",")),
        )
        with self._conn.cursor(name=f"pakr_backup_{table}") as cur:
            cur.itersize = 2000
            cur.execute(query)
            yield from cur

    def is_empty(self) -> bool:
        return all(
            self._conn.execute(
                sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(t))
            ).fetchone()
            is None
            for t in TABLES
        )

    def insert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        copy = sql.SQL("COPY {table} ({columns}) FROM STDIN").format(
            table=sql.Identifier(table),
            columns=sql.SQL(", ").join(map(sql.Identifier, TABLES[table])),
        )
        with self._conn.cursor() as cur, cur.copy(copy) as writer:
            for row in rows:
                writer.write_row(row)

    def finish_restore(self) -> None:
        self._conn.execute(
            "SELECT setval(pg_get_serial_sequence('audit', 'id'),"
            " COALESCE((SELECT max(id) FROM audit), 0) + 1, false)"
        )

    def commit(self) -> None:
        self._conn.commit()

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._conn.rollback()
        self._conn.close()


def open_database(url: str, *, write: bool) -> Database:
    try:
        if url.startswith("sqlite:///"):
            return SqliteDatabase(sqlite_path(url), write=write)
        if url.startswith(("postgresql://", "postgres://")):
            return PostgresDatabase(url, write=write)
    except psycopg.Error as exc:
        raise StoreError(f"database error: {type(exc).__name__}") from None
    raise ConfigError("storage.url must start with sqlite:/// or postgresql://")
