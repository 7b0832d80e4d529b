"""Backup and restore of a node's database, across backends (SQLite ⇄ PostgreSQL).

A backup is a JSON-lines file:

1. a header ``{"format": "pakr-node-backup", "format_version": 2, "schema_version": S,
   "node_id": hex, "source": "sqlite"|"postgresql", "created_at": unix, "data_key_check":
   b64, "key_generations": [n, ...]}``;
2. one line per row: ``{"table": "users"|"versions"|"audit", "row": {column: value}}`` with
   ``bytea``/``BLOB`` values in base64;
3. a trailer ``{"end": true, "counts": {table: n}, "sha256": hex}`` where ``sha256`` covers
   every byte before the trailer line, so a truncated or edited file is refused.

Rows move **as stored**: ``k_i``, ``s_i`` and the unlock tag stay sealed under their version
keys, which stay wrapped under key generations (:mod:`pakr.node.store.keys`). No key is ever
in a backup: the header names the generations the rows need, and once the node destroys one
(after the retention window) the backup can no longer be restored, so a restore never brings
back what the window erased. Restore checks that the backup's data-key check value opens
under the target's data key (the same node's key), that every generation it needs is in the
node's key directory, that its node id is the target config's, and that its schema version
is the target's; it writes into an empty database in one transaction and refuses otherwise.

A SQLite node is first copied with ``VACUUM INTO`` (:func:`sqlite_snapshot`), so no read
transaction stays open on the live database while the file is written.

Both backends use the same columns (:mod:`pakr.node.store.schema`), so this module talks to
each database directly (``sqlite3``, ``psycopg``) rather than through
the :class:`~pakr.node.store.base.Store` protocol, which deals in unsealed records only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from pakr.node.backup_db import NULLABLE, TABLES, Database, SqliteDatabase, open_database
from pakr.node.config import NodeConfig, sqlite_path
from pakr.node.store import open_store
from pakr.node.store.base import SCHEMA_VERSION, StoreError
from pakr.node.store.keys import KeyRing
from pakr.node.store.schema import Kind
from pakr.node.store.sealing import Sealer
from pakr.proto.errors import ConfigError

FORMAT = "pakr-node-backup"
FORMAT_VERSION = 2

_BYTES = Kind.BYTES.value
_INT = Kind.INT.value
_FLOAT = Kind.FLOAT.value
_GENERATION_AT = list(TABLES["versions"]).index("key_generation")


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What a backup or restore moved."""

    node_id: str
    schema_version: int
    source: str
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "schema_version": self.schema_version,
            "source": self.source,
            "counts": dict(self.counts),
        }


# --------------------------------------------------------------------------- value codec


def encode_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == _BYTES:
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == _INT:
        return int(value)
    if kind == _FLOAT:
        return float(value)
    return str(value)


def decode_row(table: str, row: Any, line_no: int) -> tuple[Any, ...]:
    """A row of the backup file, checked against the table's columns and kinds."""
    kinds = TABLES[table]
    if not isinstance(row, dict) or set(row) != set(kinds):
        raise ConfigError(f"backup line {line_no}: {table} row has the wrong columns")
    values: list[Any] = []
    for column, kind in kinds.items():
        value = row[column]
        if value is None:
            if column not in NULLABLE:
                raise ConfigError(f"backup line {line_no}: {table}.{column} must not be null")
            values.append(None)
        elif kind == _BYTES:
            if not isinstance(value, str):
                raise ConfigError(f"backup line {line_no}: {table}.{column} must be base64")
            try:
                values.append(base64.b64decode(value, validate=True))
            except ValueError:
                raise ConfigError(
                    f"backup line {line_no}: {table}.{column} is not valid base64"
                ) from None
        elif kind == _INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"backup line {line_no}: {table}.{column} must be an integer")
            values.append(value)
        elif kind == _FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"backup line {line_no}: {table}.{column} must be a number")
            values.append(float(value))
        else:
            if not isinstance(value, str):
                raise ConfigError(f"backup line {line_no}: {table}.{column} must be a string")
            values.append(value)
    return tuple(values)


def _check_key(sealer: Sealer, check: bytes, what: str) -> None:
    try:
        sealer.check_key(check)
    except StoreError:
        raise ConfigError(
            f"{what} was sealed under another data key than this config's data_key: use the"
            " node's own key file"
        ) from None


# --------------------------------------------------------------------------- backup


def sqlite_snapshot(database: Path, snapshot: Path) -> None:
    """Copy a live SQLite database to ``snapshot`` (0600) with ``VACUUM INTO``: one short read
    at C speed instead of a read transaction held for a whole export, and nothing freed (no
    erased page) is copied. The node's writer never waits for it (WAL readers do not block
    writers, and its checkpoints retry in the background)."""
    fd = os.open(snapshot, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("VACUUM INTO ?", (str(snapshot),))
        finally:
            conn.close()
    except BaseException:
        snapshot.unlink(missing_ok=True)
        raise


def _outside_keys(config: NodeConfig, out: Path) -> None:
    keys = config.keys_dir.resolve()
    if out.resolve().parent == keys or keys in out.resolve().parents:
        raise ConfigError(f"{out} is inside the key directory: keep backups apart from keys")


def backup_node(config: NodeConfig, out: Path) -> BackupSummary:
    """Write the node's database to ``out`` (refuses to overwrite; mode 0600)."""
    if out.exists():
        raise ConfigError(f"{out} exists; refusing to overwrite a backup")
    _outside_keys(config, out)
    sealer = Sealer(config.data_key.load())
    snapshot: Path | None = None
    if config.storage_url.startswith("sqlite:///"):
        snapshot = out.with_name(out.name + ".snapshot")
        if not sqlite_path(config.storage_url).exists():
            raise ConfigError(f"SQLite database {sqlite_path(config.storage_url)} does not exist")
        try:
            sqlite_snapshot(sqlite_path(config.storage_url), snapshot)
        except sqlite3.Error as exc:
            raise StoreError(f"backup failed, no file written: {exc}") from None
        db: Database = SqliteDatabase(snapshot, write=False)
    else:
        db = open_database(config.storage_url, write=False)
    tmp = out.with_name(out.name + ".partial")
    counts: dict[str, int] = {}
    try:
        version = db.schema_version()
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"the database schema is {version}, this pakr writes {SCHEMA_VERSION}:"
                " run `pakr node migrate` first"
            )
        check = db.key_check()
        if check is None:
            raise StoreError("the database has no data-key check row; run `pakr node migrate`")
        _check_key(sealer, check, "the node's database")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            digest = hashlib.sha256()

            def emit(obj: Mapping[str, Any]) -> None:
                line = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode() + b"\n"
                digest.update(line)
                fh.write(line)

            emit(
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "schema_version": version,
                    "node_id": config.node_id_hex,
                    "source": db.source,
                    "created_at": time.time(),
                    "data_key_check": base64.b64encode(check).decode("ascii"),
                    # Restoring needs these key generations; once one is destroyed (after
                    # the retention window) this backup can no longer be restored.
                    "key_generations": db.key_generations(),
                }
            )
            for table, kinds in TABLES.items():
                n = 0
                for raw in db.rows(table):
                    emit(
                        {
                            "table": table,
                            "row": {
                                col: encode_value(kind, raw[i])
                                for i, (col, kind) in enumerate(kinds.items())
                            },
                        }
                    )
                    n += 1
                counts[table] = n
            trailer = {"end": True, "counts": counts, "sha256": digest.hexdigest()}
            fh.write(json.dumps(trailer, sort_keys=True).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except (sqlite3.Error, psycopg.Error) as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"backup failed, no file written: {type(exc).__name__}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        db.close()
        if snapshot is not None:
            snapshot.unlink(missing_ok=True)
    return BackupSummary(config.node_id_hex, version, db.source, counts)


# --------------------------------------------------------------------------- restore


def _read_header(fh: IO[bytes], config: NodeConfig, sealer: Sealer) -> dict[str, Any]:
    first = fh.readline()
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigError("not a pakr node backup (no pakr-node-backup header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"backup format version {header.get('format_version')!r} is not supported"
            f" (this pakr reads {FORMAT_VERSION})"
        )
    if header.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(
            f"the backup holds schema {header.get('schema_version')!r}, this pakr writes"
            f" {SCHEMA_VERSION}: restore with the pakr version that made it, then migrate"
        )
    if header.get("node_id") != config.node_id_hex:
        raise ConfigError(
            f"the backup is of node {header.get('node_id')!r}, not of this node"
            f" ({config.node_id_hex}): a node restores only its own shares"
        )
    try:
        check = base64.b64decode(str(header.get("data_key_check")), validate=True)
    except ValueError:
        raise ConfigError("the backup header's data_key_check is not base64") from None
    _check_key(sealer, check, "the backup")
    generations = header.get("key_generations")
    if not isinstance(generations, list) or not all(
        isinstance(g, int) and not isinstance(g, bool) for g in generations
    ):
        raise ConfigError("the backup header's key_generations is not a list of integers")
    for generation in generations:
        try:
            sealer.keys.key(generation)
        except StoreError as exc:
            raise ConfigError(
                f"the backup needs key generation {generation}: {exc}; a backup older than"
                " the key retention window cannot be restored (by design)"
            ) from None
    header["_raw"] = first
    return header


def restore_node(config: NodeConfig, src: Path, *, batch: int = 5000) -> BackupSummary:
    """Load a backup of this node into its (empty) database, in one transaction."""
    data_key = config.data_key.load()
    sealer = Sealer(data_key, KeyRing(data_key, config.keys_dir))
    try:
        fh = src.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read backup {src}: {exc.strerror}") from None
    with fh:
        header = _read_header(fh, config, sealer)
        # Create (or check) the target schema and its key-check row under this data key.
        asyncio.run(_migrate(config.storage_url, sealer))
        db = open_database(config.storage_url, write=True)
        try:
            if not db.is_empty():
                raise ConfigError(
                    "the node's database already holds users or audit rows; restore only into"
                    " an empty database (a fresh storage.url)"
                )
            digest = hashlib.sha256(header["_raw"])
            counts = dict.fromkeys(TABLES, 0)
            pending: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
            order = list(TABLES)
            trailer: dict[str, Any] | None = None
            line_no = 1
            for line in fh:
                line_no += 1
                if trailer is not None:
                    raise ConfigError(f"backup line {line_no}: data after the trailer")
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise ConfigError(f"backup line {line_no}: not JSON") from None
                if isinstance(obj, dict) and obj.get("end") is True:
                    trailer = obj
                    continue
                digest.update(line)
                table = obj.get("table") if isinstance(obj, dict) else None
                if table not in TABLES:
                    raise ConfigError(f"backup line {line_no}: unknown table {table!r}")
                # Rows come table by table; a parent table is flushed before its children.
                for earlier in order[: order.index(table)]:
                    if pending[earlier]:
                        db.insert(earlier, pending[earlier])
                        pending[earlier] = []
                row = decode_row(table, obj.get("row"), line_no)
                if table == "versions":
                    used = row[_GENERATION_AT]
                    if used is not None and used not in header["key_generations"]:
                        raise ConfigError(
                            f"backup line {line_no}: key generation {used} is not in the header"
                        )
                pending[table].append(row)
                counts[table] += 1
                if len(pending[table]) >= batch:
                    db.insert(table, pending[table])
                    pending[table] = []
            if trailer is None:
                raise ConfigError("the backup is truncated (no trailer): refusing to restore it")
            if trailer.get("sha256") != digest.hexdigest():
                raise ConfigError("the backup's checksum does not match: the file was altered")
            if trailer.get("counts") != counts:
                raise ConfigError("the backup's row counts do not match its trailer")
            for table in order:
                if pending[table]:
                    db.insert(table, pending[table])
            db.finish_restore()
            db.commit()
        except (sqlite3.Error, psycopg.Error) as exc:
            # First line only: a COPY error's context would quote (sealed) row data.
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise StoreError(
                f"restore failed, nothing was written: {type(exc).__name__}: {detail}"
            ) from None
        finally:
            db.close()
    return BackupSummary(config.node_id_hex, SCHEMA_VERSION, str(header.get("source")), counts)


async def _migrate(url: str, sealer: Sealer) -> int:
    store = await open_store(url, sealer, migrate=False)
    try:
        return await store.migrate()
    finally:
        await store.close()
