"""The embedded SQLite store: WAL, ``synchronous=FULL``, one DB thread, group commit.

All database writes run on one dedicated thread that owns the writing connection (reads run
at once on the caller's thread, over a read-only connection of their own). Writes queue up
as *jobs* (a function of the connection); the thread takes every job waiting, runs each in
its own SAVEPOINT inside one transaction, and COMMITs once: one fsync for all the requests
that arrived while the previous commit was on disk (group commit, NOTES-crypto.md). Each
caller's future is resolved only after that COMMIT returned, so no reply — and in
particular no OPRF evaluation — leaves the node before its guess is durable. A job that
fails rolls back to its savepoint and fails alone.

Epochs are u64 and SQLite integers are signed 64-bit, so epochs are stored as 8-byte
big-endian blobs (which also sort correctly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pakr.node.store.base import (
    SCHEMA_VERSION,
    AuditRecord,
    GuessResult,
    ReleaseResult,
    StoreError,
)
from pakr.node.store.rows import (
    VERSION_COLUMNS,
    VERSION_METADATA_SQL,
    audit_record,
    from_u64,
    u64,
    user_statuses,
    version_record,
    version_row,
)
from pakr.node.store.sealing import (
    Sealer,
)
from pakr.proto.delete import node_delete
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.messages import (
    NodeRef,
    Recover2,
    Recover3,
    Register2,
    ResetGuesses,
    UserRef,
    UserStatus,
)
from pakr.proto.records import UserRecord, VersionRecord
from pakr.proto.recover import Admission, Recover3Outcome, admit_recover2, node_recover3
from pakr.proto.register import node_register2, node_register3
from pakr.proto.reset import check_reset, node_reset, nonce_claim_key

log = logging.getLogger("pakr.node.store")

T = TypeVar("T")

MAX_BATCH = 1024
INLINE_IDLE_SECONDS = 0.002
"""A write arriving this long after the previous one commits inline (see ``try_inline``)."""

# Schema migrations: index i upgrades from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE users (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        tombstone_epoch BLOB NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (tenant, user_id)
    );
    CREATE TABLE versions (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        version BLOB NOT NULL,
        slot TEXT NOT NULL CHECK (slot IN ('committed', 'pending')),
        epoch BLOB NOT NULL,
        argon2_memory_kib INTEGER NOT NULL,
        argon2_iterations INTEGER NOT NULL,
        argon2_parallelism INTEGER NOT NULL,
        max_guesses INTEGER NOT NULL,
        guess_count INTEGER NOT NULL,
        sealed_oprf_key_share BLOB,
        sealed_secret_share BLOB,
        sealed_unlock_tag BLOB,
        encrypted_secret BLOB,
        oprf_public_share BLOB NOT NULL,
        oprf_key_signature BLOB NOT NULL,
        verifying_key BLOB NOT NULL,
        commitment BLOB NOT NULL,
        secret_commitment BLOB NOT NULL,
        created_at REAL NOT NULL,
        attempt_id BLOB,
        attempt_element BLOB,
        attempt_nonce BLOB,
        attempt_started_at REAL,
        attempt_used INTEGER NOT NULL DEFAULT 0,
        locked_at REAL,
        PRIMARY KEY (tenant, user_id, version),
        UNIQUE (tenant, user_id, slot)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        op TEXT NOT NULL,
        outcome TEXT NOT NULL,
        peer TEXT NOT NULL
    );
    CREATE INDEX audit_by_tenant ON audit (tenant, id);
    CREATE INDEX audit_by_time ON audit (time);
    """,
    """
    CREATE TABLE token_uses (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
    CREATE INDEX token_uses_by_expiry ON token_uses (expires_at);
    """,
)

DATA_TABLES = ("meta", "users", "versions")


# Built from constant column names only (no input reaches this string).
_VERSION_UPSERT = (
    f"INSERT OR REPLACE INTO versions ({', '.join(VERSION_COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join('?' for _ in VERSION_COLUMNS)})"
)


# --------------------------------------------------------------------------- DB thread


class _Queue:
    """The type of :data:`QUEUE`: "not run inline, queue it" (a job may return ``None``)."""


QUEUE = _Queue()


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    loop: asyncio.AbstractEventLoop | None  # None: run inline, nobody to notify
    future: asyncio.Future[T] | None


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _notify(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Hand a result back to its event loop; a loop closed meanwhile has nobody waiting."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        _settle(future, result, error)


class _DbThread:
    """The thread that owns the connection and commits queued jobs in groups."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._conn: sqlite3.Connection | None = None
        self._busy = threading.Lock()  # held by whoever uses the connection
        self._last_write = -INLINE_IDLE_SECONDS
        self.commits = 0
        self.inline = 0
        self.scrub_requested = False  # set by jobs that erase secret material
        self._thread = threading.Thread(target=self._run, name="pakr-sqlite", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise StoreError(f"cannot open SQLite database {path}: {self._open_error}")

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, loop, future))
        return future

    def try_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T | _Queue:
        """Run ``fn`` in its own transaction right here if the database is idle.

        :data:`QUEUE` when it is not: the caller queues the job for group commit. Idle
        means no write for :data:`INLINE_IDLE_SECONDS`, nothing queued and the connection
        free. A lone request then commits without two thread hand-offs, which on a loaded
        host cost far more than the write; under load every write goes through the queue
        and shares its commit. Raises the job's error (after its rollback) like a queued one.
        """
        now = time.monotonic()
        last, self._last_write = self._last_write, now
        if now - last < INLINE_IDLE_SECONDS or not self._queue.empty():
            return QUEUE
        if self._conn is None or not self._busy.acquire(blocking=False):
            return QUEUE
        try:
            job: _Job[T] = _Job(fn, None, None)
            ((_, result, error),) = self._execute(self._conn, [job])
        finally:
            self._busy.release()
        self.inline += 1
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 10000")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Erased shares (lockout, replaced versions, deletes) are overwritten with zeros in the
        # database file, not merely unlinked from the b-tree (PROTOCOL.md §4 lockout).
        conn.execute("PRAGMA secure_delete = ON")
        return conn

    def _run(self) -> None:
        try:
            conn = self._connect()
        except (sqlite3.Error, OSError, StoreError) as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._conn = conn
        self._ready.set()
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                batch: list[_Job[Any]] = []
                if first is None:
                    stopping = True
                else:
                    batch.append(first)
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stopping = True
                        break
                    batch.append(nxt)
                if batch:
                    with self._busy:
                        results = self._execute(conn, batch)
                    self._deliver(results)
        finally:
            with self._busy:
                self._conn = None
                conn.close()

    def _execute(
        self, conn: sqlite3.Connection, batch: list[_Job[Any]]
    ) -> list[tuple[_Job[Any], Any, BaseException | None]]:
        """Run ``batch`` in one transaction, each job in its own savepoint; commit once."""
        results: list[tuple[_Job[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            error = StoreError(f"cannot start a transaction: {exc}")
            return [(job, None, error) for job in batch]
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except BaseException as exc:  # the job fails alone; the batch goes on
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if isinstance(exc, sqlite3.Error):
                    exc = StoreError(f"database error: {exc}")
                results.append((job, None, exc))
            else:
                conn.execute("RELEASE job")
                results.append((job, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = StoreError(f"commit failed: {exc}")
            results = [(job, None, error) for job, _, _ in results]
        self.commits += 1
        if self.scrub_requested:
            # The WAL still holds page images with the erased sealed shares: fold it into the
            # (securely deleted) database and truncate it before anyone hears the outcome, so
            # a disk image taken after a lockout reply has nothing left to attack.
            self.scrub_requested = False
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint after an erase failed: %s", exc)
        return results

    @staticmethod
    def _deliver(results: list[tuple[_Job[Any], Any, BaseException | None]]) -> None:
        """Settle queued jobs' futures: one wake-up per event loop for the whole batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
        for job, result, err in results:
            assert job.loop is not None and job.future is not None
            by_loop.setdefault(job.loop, []).append((job.future, result, err))
        for loop, settled in by_loop.items():
            _notify(loop, _settle_all, settled)


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True, slots=True)
class _RaiseAfterCommit:
    """A refusal whose side effects (a lazy lockout) must commit: raised after the COMMIT.

    Raising inside the job would roll its savepoint back, undoing the lockout."""

    error: NodeRefusal


class SqliteStore:
    """:class:`~pakr.node.store.base.Store` over one SQLite file."""

    def __init__(self, path: str | Path, sealer: Sealer) -> None:
        self.path = Path(path)
        self._sealer = sealer
        self._db = _DbThread(self.path)
        self._reader: sqlite3.Connection | None = None
        self._closed = False

    @property
    def commit_count(self) -> int:
        """How many transactions the DB thread committed (group-commit statistics)."""
        return self._db.commits

    async def _run(self, fn: Callable[[sqlite3.Connection], T | _RaiseAfterCommit]) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        result = self._db.try_inline(fn)
        if isinstance(result, _Queue):
            result = await self._db.submit(fn)
        if isinstance(result, _RaiseAfterCommit):
            raise result.error
        return result

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn`` at once on the caller's thread, in one read transaction.

        Reads skip the DB thread: in WAL mode a reader never waits for the writer, and a
        point read takes microseconds, less than the two thread hand-offs it would cost (the
        largest part of a Recover1's latency on a busy host). The read transaction gives
        ``fn`` one snapshot, so a commit landing between its queries cannot tear a record.
        """
        if self._closed:
            raise StoreError("the store is closed")
        try:
            conn = self._reader
            if conn is None:
                conn = self._reader = self._open_reader()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {exc}") from None

    def _open_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # A WAL reader is practically never busy; if it is (a WAL recovery), fail fast rather
        # than stall the event loop: the client takes another node.
        conn.execute("PRAGMA busy_timeout = 500")
        conn.execute("PRAGMA query_only = ON")
        return conn

    # ------------------------------------------------------------------ schema

    async def migrate(self) -> int:
        return await self._run(self._migrate)

    def _migrate(self, conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        current = 0 if row is None else int(row[0])
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"database schema {current} is newer than this node's {SCHEMA_VERSION};"
                " upgrade pakr"
            )
        for step in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (step + 1,))
            log.info("migrated node database schema to version %d", step + 1)
        check = conn.execute("SELECT value FROM meta WHERE key = 'data_key_check'").fetchone()
        if check is None:
            sealed = self._sealer.seal_key_check()
            conn.execute("INSERT INTO meta (key, value) VALUES ('data_key_check', ?)", (sealed,))
        else:
            self._sealer.check_key(bytes(check[0]))
        return SCHEMA_VERSION

    # ------------------------------------------------------------------ row mapping

    def _record(self, user: UserRef, row: sqlite3.Row) -> VersionRecord:
        return version_record(self._sealer, user, row)  # type: ignore[arg-type]

    def _write_version(
        self, conn: sqlite3.Connection, user: UserRef, slot: str, rec: VersionRecord
    ) -> None:
        conn.execute(_VERSION_UPSERT, version_row(self._sealer, user, slot, rec))

    def _load_user(self, conn: sqlite3.Connection, user: UserRef) -> UserRecord | None:
        head = conn.execute(
            "SELECT tombstone_epoch FROM users WHERE tenant = ? AND user_id = ?",
            (user.tenant, user.user_id),
        ).fetchone()
        if head is None:
            return None
        committed = pending = None
        for row in conn.execute(
            "SELECT * FROM versions WHERE tenant = ? AND user_id = ?",
            (user.tenant, user.user_id),
        ):
            if row["slot"] == "committed":
                committed = self._record(user, row)
            else:
                pending = self._record(user, row)
        return UserRecord(
            committed=committed,
            pending=pending,
            tombstone_epoch=from_u64(head["tombstone_epoch"]),
        )

    def _save_user(
        self, conn: sqlite3.Connection, user: UserRef, new: UserRecord, now: float
    ) -> None:
        """Write ``new`` as the user's whole record (inside the caller's transaction)."""
        conn.execute(
            """
            INSERT INTO users (tenant, user_id, tombstone_epoch, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (tenant, user_id) DO UPDATE
            SET tombstone_epoch = excluded.tombstone_epoch, updated_at = excluded.updated_at
            """,
            (user.tenant, user.user_id, u64(new.tombstone_epoch), now),
        )
        conn.execute(
            "DELETE FROM versions WHERE tenant = ? AND user_id = ?", (user.tenant, user.user_id)
        )
        self._db.scrub_requested = True  # rewritten rows may drop a replaced version's shares
        for slot, rec in (("committed", new.committed), ("pending", new.pending)):
            if rec is not None:
                self._write_version(conn, user, slot, rec)

    @staticmethod
    def _audit(
        conn: sqlite3.Connection, user: UserRef, op: str, outcome: str, now: float, peer: str
    ) -> None:
        conn.execute(
            "INSERT INTO audit (time, tenant, user_id, op, outcome, peer)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (now, user.tenant, user.user_id, op, outcome, peer),
        )

    def _version_row(
        self, conn: sqlite3.Connection, user: UserRef, version: bytes
    ) -> VersionRecord | None:
        row = conn.execute(
            "SELECT * FROM versions WHERE tenant = ? AND user_id = ? AND version = ?",
            (user.tenant, user.user_id, version),
        ).fetchone()
        return None if row is None else self._record(user, row)

    def _lock(
        self, conn: sqlite3.Connection, user: UserRef, version: bytes, now: float, peer: str
    ) -> bool:
        """Erase the version's shares if its lockout is due (decided by the pure record)."""
        record = self._version_row(conn, user, version)
        if record is None or not record.lockout_due(now):
            return False
        cur = conn.execute(
            """
            UPDATE versions SET sealed_oprf_key_share = NULL, sealed_secret_share = NULL,
                sealed_unlock_tag = NULL, encrypted_secret = NULL, attempt_id = NULL,
                attempt_element = NULL, attempt_nonce = NULL, attempt_started_at = NULL,
                attempt_used = 0, locked_at = ?
            WHERE tenant = ? AND user_id = ? AND version = ? AND sealed_oprf_key_share IS NOT NULL
            """,
            (now, user.tenant, user.user_id, version),
        )
        if cur.rowcount:
            self._db.scrub_requested = True
            self._audit(conn, user, "locked", "locked", now, peer)
            log.info("version locked out after its last failed guess")
        return bool(cur.rowcount)

    # ------------------------------------------------------------------ Store API

    async def get_user(self, user: UserRef) -> UserRecord | None:
        return self._read(lambda conn: self._load_user(conn, user))

    async def register_pending(
        self, user: UserRef, request: Register2, *, node: NodeRef, now: float, peer: str
    ) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            current = self._load_user(conn, user)
            new = node_register2(current, request, user=user, node=node, now=now)
            if new is None:
                return False
            self._save_user(conn, user, new, now)
            self._audit(conn, user, "registered", "pending", now, peer)
            return True

        return await self._run(job)

    async def commit(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            new = node_register3(self._load_user(conn, user), version)
            if new is None:
                return False
            self._save_user(conn, user, new, now)
            self._audit(conn, user, "registered", "committed", now, peer)
            return True

        return await self._run(job)

    async def delete(self, user: UserRef, epoch: int, *, now: float, peer: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            new = node_delete(self._load_user(conn, user), epoch)
            if new is None:
                return False
            self._save_user(conn, user, new, now)
            self._audit(conn, user, "deleted", f"epoch={epoch}", now, peer)
            return True

        return await self._run(job)

    async def count_guess(
        self, user: UserRef, request: Recover2, *, nonce: bytes, now: float, peer: str
    ) -> GuessResult:
        element = request.blinded_element.encoded

        def job(conn: sqlite3.Connection) -> GuessResult | _RaiseAfterCommit:
            row = conn.execute(
                """
                UPDATE versions
                SET guess_count = guess_count + 1, attempt_id = :aid, attempt_element = :b,
                    attempt_nonce = :nonce, attempt_started_at = :now, attempt_used = 0
                WHERE tenant = :tenant AND user_id = :user AND version = :version
                  AND sealed_oprf_key_share IS NOT NULL
                  AND guess_count < max_guesses
                  AND NOT (attempt_id IS NOT NULL AND attempt_id = :aid AND attempt_element = :b)
                RETURNING *
                """,
                {
                    "aid": request.attempt_id,
                    "b": element,
                    "nonce": nonce,
                    "now": now,
                    "tenant": user.tenant,
                    "user": user.user_id,
                    "version": request.version,
                },
            ).fetchone()
            if row is not None:
                counted = self._record(user, row)
                self._audit(
                    conn, user, "guess_used", f"remaining={counted.guesses_remaining}", now, peer
                )
                return GuessResult(record=counted, counted=True)
            record = self._version_row(conn, user, request.version)
            if record is None:
                raise NodeRefusal(
                    ErrorKind.NOT_REGISTERED, "this node holds no such version for the user"
                )
            admission = admit_recover2(record, request, now)
            if admission is Admission.REPLAY:
                return GuessResult(record=record, counted=False)
            if admission is Admission.LOCKED:
                self._lock(conn, user, request.version, now, peer)
                return _RaiseAfterCommit(
                    NodeRefusal(ErrorKind.LOCKED, "this version is locked out", guesses_remaining=0)
                )
            if admission is Admission.NO_GUESSES:
                raise NodeRefusal(
                    ErrorKind.NO_GUESSES,
                    "no guesses remain for this version",
                    guesses_remaining=0,
                )
            raise StoreError("guess count update and stored row disagree")  # pragma: no cover

        return await self._run(job)

    async def release(
        self, user: UserRef, request: Recover3, *, now: float, peer: str
    ) -> ReleaseResult:
        def job(conn: sqlite3.Connection) -> ReleaseResult | _RaiseAfterCommit:
            record = self._version_row(conn, user, request.version)
            if record is None:
                raise NodeRefusal(
                    ErrorKind.NOT_REGISTERED, "this node holds no such version for the user"
                )
            if record.lockout_due(now):  # the last guess's grace ran out: too late to unlock
                self._lock(conn, user, request.version, now, peer)
                return _RaiseAfterCommit(
                    NodeRefusal(ErrorKind.LOCKED, "this version is locked out", guesses_remaining=0)
                )
            after, reply, outcome = node_recover3(record, request, now)
            if outcome is Recover3Outcome.STALE:
                return ReleaseResult(outcome=outcome, reply=None, record=record)
            assert record.attempt is not None
            cur = conn.execute(
                """
                UPDATE versions SET guess_count = ?, attempt_used = 1
                WHERE tenant = ? AND user_id = ? AND version = ? AND attempt_id = ?
                  AND attempt_used = 0 AND sealed_oprf_key_share IS NOT NULL
                """,
                (
                    after.guess_count,
                    user.tenant,
                    user.user_id,
                    request.version,
                    record.attempt.attempt_id,
                ),
            )
            if cur.rowcount != 1:  # pragma: no cover - single writer; PostgreSQL may race
                return ReleaseResult(outcome=Recover3Outcome.STALE, reply=None, record=record)
            locked = False
            if outcome is Recover3Outcome.MATCH:
                self._audit(conn, user, "share_released", "ok", now, peer)
            else:
                self._audit(conn, user, "unlock_failed", "bad_unlock_tag", now, peer)
                if after.locked:
                    locked = self._lock(conn, user, request.version, now, peer)
            return ReleaseResult(outcome=outcome, reply=reply, record=after, locked=locked)

        return await self._run(job)

    async def claim_token(self, key: str, expires_at: float, *, now: float) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM token_uses WHERE expires_at < ?", (now,))
            cur = conn.execute(
                "INSERT OR IGNORE INTO token_uses (key, expires_at) VALUES (?, ?)",
                (key, expires_at),
            )
            return cur.rowcount == 1

        return await self._run(job)

    async def reset_guesses(
        self, user: UserRef, request: ResetGuesses, *, expires_at: float, now: float, peer: str
    ) -> None:
        def job(conn: sqlite3.Connection) -> None:
            record = self._version_row(conn, user, request.version)
            check_reset(record, request, now)
            assert record is not None
            conn.execute("DELETE FROM token_uses WHERE expires_at < ?", (now,))
            claimed = conn.execute(
                "INSERT OR IGNORE INTO token_uses (key, expires_at) VALUES (?, ?)",
                (nonce_claim_key(user, request.nonce), expires_at),
            )
            if claimed.rowcount != 1:
                raise NodeRefusal(ErrorKind.STALE_ATTEMPT, "reset nonce already used")
            conn.execute(
                "UPDATE versions SET guess_count = ? WHERE tenant = ? AND user_id = ?"
                " AND version = ? AND sealed_oprf_key_share IS NOT NULL",
                (node_reset(record).guess_count, user.tenant, user.user_id, request.version),
            )
            self._audit(conn, user, "guesses_reset", "ok", now, peer)

        await self._run(job)

    async def lock_version(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        return await self._run(lambda conn: self._lock(conn, user, version, now, peer))

    async def append_audit(
        self, user: UserRef, op: str, outcome: str, *, now: float, peer: str
    ) -> None:
        await self._run(lambda conn: self._audit(conn, user, op, outcome, now, peer))

    async def read_audit(
        self, tenant: str, user_id: str | None, *, after_id: int, limit: int
    ) -> Sequence[AuditRecord]:
        def job(conn: sqlite3.Connection) -> list[AuditRecord]:
            sql = "SELECT * FROM audit WHERE tenant = ? AND id > ?"
            args: list[Any] = [tenant, after_id]
            if user_id:
                sql += " AND user_id = ?"
                args.append(user_id)
            sql += " ORDER BY id LIMIT ?"
            args.append(limit)
            return [audit_record(row) for row in conn.execute(sql, args)]

        return self._read(job)

    async def list_versions(
        self, tenant: str, *, after_user_id: str, limit: int
    ) -> Sequence[tuple[str, UserStatus]]:
        def job(conn: sqlite3.Connection) -> list[tuple[str, UserStatus]]:
            users = conn.execute(
                "SELECT user_id, tombstone_epoch FROM users WHERE tenant = ? AND user_id > ?"
                " ORDER BY user_id LIMIT ?",
                (tenant, after_user_id, limit),
            ).fetchall()
            if not users:
                return []
            versions = conn.execute(
                VERSION_METADATA_SQL + " WHERE tenant = ? AND user_id > ? AND user_id <= ?",
                (tenant, after_user_id, users[-1]["user_id"]),
            ).fetchall()
            return user_statuses(users, versions)

        return self._read(job)

    async def prune_audit(self, before: float) -> int:
        def job(conn: sqlite3.Connection) -> int:
            return int(conn.execute("DELETE FROM audit WHERE time < ?", (before,)).rowcount)

        return await self._run(job)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await asyncio.to_thread(self._db.stop)
