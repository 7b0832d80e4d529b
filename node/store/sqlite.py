"""The embedded SQLite store: WAL, ``synchronous=FULL``, one DB thread, group commit.

All database writes run on one dedicated thread that owns the writing connection (reads run
at once on the caller's thread, over a read-only connection of their own). Writes queue up
as *jobs* (a function of the connection); the thread takes every job waiting, runs each in
its own SAVEPOINT inside one transaction, and COMMITs once: one fsync for all the requests
that arrived while the previous commit was on disk (group commit). Each
caller's future is resolved only after that COMMIT returned, so no reply — and in
particular no OPRF evaluation — leaves the node before its guess is durable. A job that
fails rolls back to its savepoint and fails alone.

The jobs run :mod:`~pakr.node.store.transactions` programs, the same ones the PostgreSQL
store runs: this module decides nothing about users. After a commit that erased sealed
values the writer folds the WAL into the (securely deleted) file at once if no reader holds
an older snapshot, and otherwise leaves it to the background
:class:`~pakr.node.store.checkpoint.Checkpointer`: a reader never stalls the writer.

Epochs are u64 and SQLite integers are signed 64-bit, so epochs are stored as 8-byte
big-endian blobs (which also sort correctly).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pakr.node.store import heal_tx, maintenance, migrations
from pakr.node.store import transactions as tx
from pakr.node.store.base import AuditRecord, GuessResult, ReleaseResult, StoreError, SweepResult
from pakr.node.store.checkpoint import Checkpointer
from pakr.node.store.maintenance import sweep
from pakr.node.store.schema import Dialect
from pakr.node.store.sealing import Sealer
from pakr.node.store.transactions import Deferred, Fetch, Program
from pakr.proto.messages import (
    NodeRef,
    Recover2,
    Recover3,
    Register2,
    ResetGuesses,
    UserRef,
    UserStatus,
)
from pakr.proto.records import UserRecord

log = logging.getLogger("pakr.node.store")

T = TypeVar("T")

MAX_BATCH = 1024
INLINE_IDLE_SECONDS = 0.002
"""A write arriving this long after the previous one commits inline (see ``try_inline``)."""
SQLITE = Dialect.SQLITE
WRITER_BUSY_MS = 10000


def create_private_file(path: Path) -> None:
    """Create the database file 0600 in a 0700 directory before SQLite opens it: SQLite gives
    its WAL and shared-memory files the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


def drive(conn: sqlite3.Connection, program: Program[T], on_erase: Callable[[], None]) -> T:
    """Run a :mod:`~pakr.node.store.transactions` program on ``conn`` (in the caller's
    transaction)."""
    try:
        query = next(program)
        while True:
            if query.many is not None:
                cur = conn.executemany(query.sql, query.many)
            else:
                cur = conn.execute(query.sql, query.params)
            if query.erases:
                on_erase()
            result: Any = None
            if query.fetch is Fetch.ONE:
                result = cur.fetchone()
            elif query.fetch is Fetch.ALL:
                result = cur.fetchall()
            elif query.fetch is Fetch.COUNT:
                result = cur.rowcount
            query = program.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


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
        self.checkpointer = Checkpointer(path)
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
        self.checkpointer.stop()

    def _connect(self) -> sqlite3.Connection:
        create_private_file(self._path)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {WRITER_BUSY_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Erased shares (lockout, replaced versions, deletes) are overwritten with zeros in the
        # database file, not merely unlinked from the b-tree (docs/protocol.md §4 lockout).
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
            # The WAL still holds page images with the erased sealed values: fold it into the
            # (securely deleted) database file before anyone hears the outcome when no reader
            # holds an older snapshot; otherwise never wait for the reader (busy_timeout 0
            # for this one statement) and let the checkpointer retry in the background.
            # What makes the erasure final everywhere is the key generation's destruction.
            self.scrub_requested = False
            if not self._checkpoint_now(conn):
                self.checkpointer.request()
        return results

    @staticmethod
    def _checkpoint_now(conn: sqlite3.Connection) -> bool:
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {WRITER_BUSY_MS}")
        except sqlite3.Error:
            return False
        return not busy

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


class SqliteStore:
    """:class:`~pakr.node.store.base.Store` over one SQLite file."""

    def __init__(self, path: str | Path, sealer: Sealer) -> None:
        self.path = Path(path)
        self._sealer = sealer
        self._db = _DbThread(self.path)
        self._reader: sqlite3.Connection | None = None
        self._closed = False

    @property
    def sealer(self) -> Sealer:
        """The sealer (its key ring is what key rotation works on)."""
        return self._sealer

    @property
    def commit_count(self) -> int:
        """How many transactions the DB thread committed (group-commit statistics)."""
        return self._db.commits

    @property
    def checkpointer(self) -> Checkpointer:
        return self._db.checkpointer

    def _erased(self) -> None:
        self._db.scrub_requested = True

    async def _run(self, make: Callable[[], Program[T | Deferred]]) -> T:
        """Run a fresh program from ``make`` as one write transaction; a :class:`Deferred`
        refusal is raised after its transaction committed."""
        if self._closed:
            raise StoreError("the store is closed")

        def job(conn: sqlite3.Connection) -> T | Deferred:
            return drive(conn, make(), self._erased)

        result = self._db.try_inline(job)
        if isinstance(result, _Queue):
            result = await self._db.submit(job)
        if isinstance(result, Deferred):
            raise result.error
        return result

    def _read(self, program: Program[T]) -> T:
        """Run a read-only program at once on the caller's thread, in one read transaction.

        Reads skip the DB thread: in WAL mode a reader never waits for the writer, and a
        point read takes microseconds, less than the two thread hand-offs it would cost (the
        largest part of a Recover1's latency on a busy host). The read transaction gives the
        program one snapshot, so a commit landing between its queries cannot tear a record.
        """
        if self._closed:
            raise StoreError("the store is closed")
        try:
            conn = self._reader
            if conn is None:
                conn = self._reader = self._open_reader()
            conn.execute("BEGIN")
            try:
                return drive(conn, program, self._erased)
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

    # ------------------------------------------------------------------ Store API

    async def migrate(self) -> int:
        return await self._run(lambda: migrations.migrate(SQLITE, self._sealer))

    async def get_user(self, user: UserRef) -> UserRecord | None:
        return self._read(tx.load_user(SQLITE, self._sealer, user, lock=False))

    async def register_pending(
        self, user: UserRef, request: Register2, *, node: NodeRef, now: float, peer: str
    ) -> bool:
        return await self._run(
            lambda: tx.register_pending(SQLITE, self._sealer, user, request, node, now, peer)
        )

    async def commit(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        return await self._run(lambda: tx.commit(SQLITE, self._sealer, user, version, now, peer))

    async def delete(self, user: UserRef, epoch: int, *, now: float, peer: str) -> bool:
        return await self._run(lambda: tx.delete(SQLITE, self._sealer, user, epoch, now, peer))

    async def count_guess(
        self, user: UserRef, request: Recover2, *, nonce: bytes, now: float, peer: str
    ) -> GuessResult:
        return await self._run(
            lambda: tx.count_guess(SQLITE, self._sealer, user, request, nonce, now, peer)
        )

    async def release(
        self, user: UserRef, request: Recover3, *, now: float, peer: str
    ) -> ReleaseResult:
        return await self._run(lambda: tx.release(SQLITE, self._sealer, user, request, now, peer))

    async def claim_token(self, key: str, expires_at: float, *, now: float) -> bool:
        return await self._run(lambda: tx.claim_token(key, expires_at, now))

    async def lock_version(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        return await self._run(
            lambda: tx.lock_version(SQLITE, self._sealer, user, version, now, peer)
        )

    async def append_audit(
        self, user: UserRef, op: str, outcome: str, *, now: float, peer: str
    ) -> None:
        await self._run(lambda: tx.audit(user, op, outcome, now, peer))

    async def read_audit(
        self, tenant: str, user_id: str | None, *, after_id: int, limit: int
    ) -> Sequence[AuditRecord]:
        return self._read(tx.read_audit(tenant, user_id, after_id, limit))

    async def reset_guesses(
        self, user: UserRef, request: ResetGuesses, *, expires_at: float, now: float, peer: str
    ) -> None:
        await self._run(
            lambda: heal_tx.reset_guesses(
                SQLITE, self._sealer, user, request, expires_at, now, peer
            )
        )

    async def list_versions(
        self, tenant: str, *, after_user_id: str, limit: int
    ) -> Sequence[tuple[str, UserStatus]]:
        return self._read(heal_tx.list_versions(tenant, after_user_id, limit))

    async def prune_audit(self, before: float) -> int:
        return await self._run(lambda: tx.prune_audit(before))

    async def sweep(self, now: float, *, peer: str) -> SweepResult:
        return await sweep(self._sealer, SQLITE, self._run, now, peer)

    async def key_generation_uses(self) -> dict[int, int]:
        return self._read(maintenance.key_generation_uses())

    async def rewrap(self, generation: int, *, now: float, limit: int) -> int:
        return await self._run(
            lambda: maintenance.rewrap(SQLITE, self._sealer, generation, now, limit)
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await asyncio.to_thread(self._db.stop)
