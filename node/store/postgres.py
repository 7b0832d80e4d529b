"""The PostgreSQL store: several node processes (replicas) of one node identity share it.

Selected by ``storage.url = "postgresql://…"``; :func:`open_postgres_store` is what
:func:`pakr.node.store.open_store` calls. Each :class:`~pakr.node.store.base.Store` method is
one transaction on a pooled connection (``psycopg_pool.AsyncConnectionPool``), so it is
durable (``synchronous_commit`` as the server sets it; keep the default ``on``) before it
returns. Concurrent transactions from all replicas share WAL flushes, which gives group
commit without any batching code here.

Races between replicas are decided inside the database, never in Python:

* Recover2 spends a guess with ONE conditional ``UPDATE … RETURNING`` (``guess_count <
  max_guesses``), which writes its audit row in the same statement and runs as its own
  transaction (one round trip). Under READ COMMITTED a concurrent update of the same row
  waits for the first to commit and then re-evaluates the condition on the new row, so no
  interleaving of any number of processes spends more than ``max_guesses``. Only when it
  matches nothing does a second transaction lock the row and let ``admit_recover2`` say why
  (retry, no guesses, locked, unknown).
* Register2/Register3/Delete lock the user's row and its version rows (``SELECT … FOR
  UPDATE``) before the pure step (``node_register2``, ``node_register3``, ``node_delete``)
  decides, and write the result back *in place* (upsert by version), so a guess counted
  meanwhile is either waited for and seen, or waits for the write and then counts on the
  written row. Nothing is ever re-inserted from a stale read.
* Recover3 locks the version row before ``node_recover3`` decides.
* Migrations take a transaction-scoped advisory lock, so replicas starting together migrate
  once.

The schema is column-for-column the SQLite store's (epochs as 8-byte big-endian ``bytea``,
sealed fields as ``nonce ‖ ciphertext``), so :mod:`pakr.node.backup` moves rows between the
two backends verbatim, sealed fields included.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
Conn = AsyncConnection[DictRow]

# pg_advisory_xact_lock key that serializes migrations across replicas ("pakr" + schema).
MIGRATION_LOCK_KEY = 0x70616B72_00000001

DEFAULT_MIN_CONNECTIONS = 2
DEFAULT_MAX_CONNECTIONS = 16
CONNECT_TIMEOUT_SECONDS = 10.0


# Schema migrations: index i upgrades from version i to i + 1. ``attempt_used`` is an
# integer (0/1) as in SQLite so rows move between backends unchanged.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL)",
        """
        CREATE TABLE users (
            tenant TEXT NOT NULL,
            user_id TEXT NOT NULL,
            tombstone_epoch BYTEA NOT NULL CHECK (length(tombstone_epoch) = 8),
            updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant, user_id)
        )
        """,
        """
        CREATE TABLE versions (
            tenant TEXT NOT NULL,
            user_id TEXT NOT NULL,
            version BYTEA NOT NULL,
            slot TEXT NOT NULL CHECK (slot IN ('committed', 'pending')),
            epoch BYTEA NOT NULL CHECK (length(epoch) = 8),
            argon2_memory_kib INTEGER NOT NULL,
            argon2_iterations INTEGER NOT NULL,
            argon2_parallelism INTEGER NOT NULL,
            max_guesses INTEGER NOT NULL,
            guess_count INTEGER NOT NULL,
            sealed_oprf_key_share BYTEA,
            sealed_secret_share BYTEA,
            sealed_unlock_tag BYTEA,
            encrypted_secret BYTEA,
            oprf_public_share BYTEA NOT NULL,
            oprf_key_signature BYTEA NOT NULL,
            verifying_key BYTEA NOT NULL,
            commitment BYTEA NOT NULL,
            secret_commitment BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            attempt_id BYTEA,
            attempt_element BYTEA,
            attempt_nonce BYTEA,
            attempt_started_at DOUBLE PRECISION,
            attempt_used INTEGER NOT NULL DEFAULT 0,
            locked_at DOUBLE PRECISION,
            PRIMARY KEY (tenant, user_id, version),
            UNIQUE (tenant, user_id, slot),
            FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, user_id)
        )
        """,
        """
        CREATE TABLE audit (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            time DOUBLE PRECISION NOT NULL,
            tenant TEXT NOT NULL,
            user_id TEXT NOT NULL,
            op TEXT NOT NULL,
            outcome TEXT NOT NULL,
            peer TEXT NOT NULL
        )
        """,
        "CREATE INDEX audit_by_tenant ON audit (tenant, id)",
        "CREATE INDEX audit_by_time ON audit (time)",
    ),
    (
        # Single-use token ids (Register2/3, Delete), shared by every replica.
        "CREATE TABLE token_uses (key TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX token_uses_by_expiry ON token_uses (expires_at)",
    ),
)

_VERSION_INSERT = sql.SQL(
    "INSERT INTO versions ({columns}) VALUES ({values})"
    " ON CONFLICT (tenant, user_id, version) DO UPDATE SET {updates}"
).format(
    columns=sql.SQL(", ").join(map(sql.Identifier, VERSION_COLUMNS)),
    values=sql.SQL(", ").join(sql.Placeholder() for _ in VERSION_COLUMNS),
    updates=sql.SQL(", ").join(
        sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c))
        for c in VERSION_COLUMNS
        if c not in ("tenant", "user_id", "version")
    ),
)

# Recover2's guess: ONE conditional update (count below the limit, shares present, not a
# retry of the latest attempt) that also writes its audit row. Under READ COMMITTED a
# concurrent update of the row waits for the other to commit, then re-checks the condition
# on the new row, so concurrent replicas can never spend more than max_guesses.
_COUNT_GUESS = """
WITH counted AS (
    UPDATE versions
    SET guess_count = guess_count + 1, attempt_id = %(aid)s, attempt_element = %(b)s,
        attempt_nonce = %(nonce)s, attempt_started_at = %(now)s, attempt_used = 0
    WHERE tenant = %(tenant)s AND user_id = %(user)s AND version = %(version)s
      AND sealed_oprf_key_share IS NOT NULL
      AND guess_count < max_guesses
      AND NOT (attempt_id IS NOT DISTINCT FROM %(aid)s
               AND attempt_element IS NOT DISTINCT FROM %(b)s)
    RETURNING *
), audited AS (
    INSERT INTO audit (time, tenant, user_id, op, outcome, peer)
    SELECT %(now)s, tenant, user_id, 'guess_used',
           'remaining=' || (max_guesses - guess_count), %(peer)s
    FROM counted
)
SELECT * FROM counted
"""
_SELECT_USER = "SELECT tombstone_epoch FROM users WHERE tenant = %s AND user_id = %s"
_SELECT_USER_FOR_UPDATE = _SELECT_USER + " FOR UPDATE"
_SELECT_VERSIONS = "SELECT * FROM versions WHERE tenant = %s AND user_id = %s"
_SELECT_VERSIONS_FOR_UPDATE = _SELECT_VERSIONS + " FOR UPDATE"
_SELECT_VERSION = "SELECT * FROM versions WHERE tenant = %s AND user_id = %s AND version = %s"
_SELECT_VERSION_FOR_UPDATE = _SELECT_VERSION + " FOR UPDATE"


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<unparseable URL>"
    host = info.get("host") or "localhost"
    return f"postgresql://{info.get('user') or ''}@{host}:{info.get('port') or 5432}/" + str(
        info.get("dbname") or ""
    )


class _RaiseAfterCommit(Exception):
    """A refusal whose side effects (a lazy lockout) must commit before it is raised."""

    def __init__(self, error: NodeRefusal) -> None:
        super().__init__(str(error))
        self.error = error


class PostgresStore:
    """:class:`~pakr.node.store.base.Store` over one PostgreSQL database (shared by replicas)."""

    def __init__(self, pool: AsyncConnectionPool[Conn], sealer: Sealer, *, url: str) -> None:
        self._pool = pool
        self._sealer = sealer
        self._where = redact_url(url)
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresStore({self._where})"

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        """The connection pool (for backup, benchmarks and tests)."""
        return self._pool

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        if self._closed:
            raise StoreError("the store is closed")
        async with self._pool.connection() as conn, conn.transaction():
            yield conn

    async def _run(self, fn: Callable[[Conn], Awaitable[T]], *, transaction: bool = True) -> T:
        """Run ``fn`` in one transaction (or, for a single statement, in autocommit);
        database failures become :class:`StoreError`."""
        try:
            if transaction:
                async with self._transaction() as conn:
                    return await fn(conn)
            if self._closed:
                raise StoreError("the store is closed")
            async with self._pool.connection() as conn:
                return await fn(conn)
        except psycopg.Error as exc:
            raise StoreError(
                f"PostgreSQL ({self._where}) failed: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        except TimeoutError:
            raise StoreError(
                f"no PostgreSQL connection to {self._where} became free in time; check the"
                " server and the pool size"
            ) from None

    # ------------------------------------------------------------------ schema

    async def migrate(self) -> int:
        async def job(conn: Conn) -> int:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
            current = 0 if row is None else int(row["version"])
            if row is None:
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema {current} is newer than this node's {SCHEMA_VERSION};"
                    " upgrade pakr"
                )
            for step in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    await conn.execute(statement)
                await conn.execute("UPDATE schema_version SET version = %s", (step + 1,))
                log.info("migrated node database schema to version %d", step + 1)
            check = await (
                await conn.execute("SELECT value FROM meta WHERE key = 'data_key_check'")
            ).fetchone()
            if check is None:
                sealed = self._sealer.seal_key_check()
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('data_key_check', %s)", (sealed,)
                )
            else:
                self._sealer.check_key(bytes(check["value"]))
            return SCHEMA_VERSION

        return await self._run(job)

    async def schema_version(self) -> int:
        """The schema version in the database (0 before the first migration)."""

        async def job(conn: Conn) -> int:
            row = await (await conn.execute("SELECT to_regclass('schema_version') AS t")).fetchone()
            if row is None or row["t"] is None:
                return 0
            found = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
            return 0 if found is None else int(found["version"])

        return await self._run(job)

    # ------------------------------------------------------------------ row mapping

    def _record(self, user: UserRef, row: Mapping[str, Any]) -> VersionRecord:
        return version_record(self._sealer, user, row)

    def version_row(self, user: UserRef, slot: str, rec: VersionRecord) -> tuple[Any, ...]:
        """The ``versions`` row (in :data:`VERSION_COLUMNS` order) for a record, sealed."""
        return version_row(self._sealer, user, slot, rec)

    async def _load_user(self, conn: Conn, user: UserRef, *, lock: bool) -> UserRecord | None:
        head = await (
            await conn.execute(
                _SELECT_USER_FOR_UPDATE if lock else _SELECT_USER, (user.tenant, user.user_id)
            )
        ).fetchone()
        if head is None:
            return None
        committed = pending = None
        cur = await conn.execute(
            _SELECT_VERSIONS_FOR_UPDATE if lock else _SELECT_VERSIONS, (user.tenant, user.user_id)
        )
        for row in await cur.fetchall():
            if row["slot"] == "committed":
                committed = self._record(user, row)
            else:
                pending = self._record(user, row)
        return UserRecord(
            committed=committed,
            pending=pending,
            tombstone_epoch=from_u64(head["tombstone_epoch"]),
        )

    async def _lock_user(self, conn: Conn, user: UserRef, now: float) -> UserRecord | None:
        """Lock the user (creating a placeholder row, rolled back on refusal) and read it.

        Two replicas registering a new user at once serialize on the placeholder's key;
        ``None`` means the user did not exist before this transaction."""
        inserted = await conn.execute(
            "INSERT INTO users (tenant, user_id, tombstone_epoch, updated_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant, user_id) DO NOTHING",
            (user.tenant, user.user_id, u64(0), now),
        )
        current = await self._load_user(conn, user, lock=True)
        if inserted.rowcount == 1:
            assert current is not None and current.committed is None and current.pending is None
            return None
        return current

    async def _save_user(self, conn: Conn, user: UserRef, new: UserRecord, now: float) -> None:
        """Write ``new`` as the user's record, in place (the caller holds the row locks)."""
        await conn.execute(
            "UPDATE users SET tombstone_epoch = %s, updated_at = %s"
            " WHERE tenant = %s AND user_id = %s",
            (u64(new.tombstone_epoch), now, user.tenant, user.user_id),
        )
        keep = [rec.version for rec in (new.committed, new.pending) if rec is not None]
        await conn.execute(
            "DELETE FROM versions WHERE tenant = %s AND user_id = %s AND NOT (version = ANY(%s))",
            (user.tenant, user.user_id, keep),
        )
        # The pure steps never swap slots between two kept versions (Register3 drops the old
        # committed one), so after the delete each upsert finds its slot free.
        for slot, rec in (("committed", new.committed), ("pending", new.pending)):
            if rec is not None:
                await conn.execute(_VERSION_INSERT, self.version_row(user, slot, rec))

    @staticmethod
    async def _audit(
        conn: Conn, user: UserRef, op: str, outcome: str, now: float, peer: str
    ) -> None:
        await conn.execute(
            "INSERT INTO audit (time, tenant, user_id, op, outcome, peer)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (now, user.tenant, user.user_id, op, outcome, peer),
        )

    async def _version_row(
        self, conn: Conn, user: UserRef, version: bytes, *, lock: bool
    ) -> VersionRecord | None:
        row = await (
            await conn.execute(
                _SELECT_VERSION_FOR_UPDATE if lock else _SELECT_VERSION,
                (user.tenant, user.user_id, version),
            )
        ).fetchone()
        return None if row is None else self._record(user, row)

    async def _lock(self, conn: Conn, user: UserRef, version: bytes, now: float, peer: str) -> bool:
        """Erase the version's shares if its lockout is due (decided by the pure record)."""
        record = await self._version_row(conn, user, version, lock=True)
        if record is None or not record.lockout_due(now):
            return False
        cur = await conn.execute(
            """
            UPDATE versions SET sealed_oprf_key_share = NULL, sealed_secret_share = NULL,
                sealed_unlock_tag = NULL, encrypted_secret = NULL, attempt_id = NULL,
                attempt_element = NULL, attempt_nonce = NULL, attempt_started_at = NULL,
                attempt_used = 0, locked_at = %s
            WHERE tenant = %s AND user_id = %s AND version = %s
              AND sealed_oprf_key_share IS NOT NULL
            """,
            (now, user.tenant, user.user_id, version),
        )
        if cur.rowcount:
            await self._audit(conn, user, "locked", "locked", now, peer)
            log.info("version locked out after its last failed guess")
        return bool(cur.rowcount)

    # ------------------------------------------------------------------ Store API

    async def get_user(self, user: UserRef) -> UserRecord | None:
        async def job(conn: Conn) -> UserRecord | None:
            return await self._load_user(conn, user, lock=False)

        return await self._run(job)

    async def register_pending(
        self, user: UserRef, request: Register2, *, node: NodeRef, now: float, peer: str
    ) -> bool:
        async def job(conn: Conn) -> bool:
            current = await self._lock_user(conn, user, now)
            new = node_register2(current, request, user=user, node=node, now=now)
            if new is None:
                return False
            await self._save_user(conn, user, new, now)
            await self._audit(conn, user, "registered", "pending", now, peer)
            return True

        return await self._run(job)

    async def commit(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        async def job(conn: Conn) -> bool:
            new = node_register3(await self._load_user(conn, user, lock=True), version)
            if new is None:
                return False
            await self._save_user(conn, user, new, now)
            await self._audit(conn, user, "registered", "committed", now, peer)
            return True

        return await self._run(job)

    async def delete(self, user: UserRef, epoch: int, *, now: float, peer: str) -> bool:
        async def job(conn: Conn) -> bool:
            new = node_delete(await self._lock_user(conn, user, now), epoch)
            if new is None:
                return False
            await self._save_user(conn, user, new, now)
            await self._audit(conn, user, "deleted", f"epoch={epoch}", now, peer)
            return True

        return await self._run(job)

    async def count_guess(
        self, user: UserRef, request: Recover2, *, nonce: bytes, now: float, peer: str
    ) -> GuessResult:
        params = {
            "aid": request.attempt_id,
            "b": request.blinded_element.encoded,
            "nonce": nonce,
            "now": now,
            "tenant": user.tenant,
            "user": user.user_id,
            "version": request.version,
            "peer": peer,
        }

        async def counted(conn: Conn) -> DictRow | None:
            return await (await conn.execute(_COUNT_GUESS, params)).fetchone()

        # The common case is one statement in its own (autocommit) transaction: the
        # conditional update and its audit row, durable when it returns.
        row = await self._run(counted, transaction=False)
        if row is not None:
            return GuessResult(record=self._record(user, row), counted=True)

        async def explain(conn: Conn) -> GuessResult:
            # The update matched nothing: the locked row says why (admit_recover2).
            record = await self._version_row(conn, user, request.version, lock=True)
            if record is None:
                raise NodeRefusal(
                    ErrorKind.NOT_REGISTERED, "this node holds no such version for the user"
                )
            admission = admit_recover2(record, request, now)
            if admission is Admission.REPLAY:
                return GuessResult(record=record, counted=False)
            if admission is Admission.LOCKED:
                await self._lock(conn, user, request.version, now, peer)
                raise _RaiseAfterCommit(
                    NodeRefusal(ErrorKind.LOCKED, "this version is locked out", guesses_remaining=0)
                )
            if admission is Admission.NO_GUESSES:
                raise NodeRefusal(
                    ErrorKind.NO_GUESSES, "no guesses remain for this version", guesses_remaining=0
                )
            # COUNT: the row changed after the update looked (a Recover3 reset it, a commit
            # rewrote it); we hold its lock now, so the same update decides for good.
            again = await counted(conn)
            if again is None:  # pragma: no cover - the row is locked and admits a guess
                raise StoreError("guess count update and stored row disagree")
            return GuessResult(record=self._record(user, again), counted=True)

        return await self._run_deferring(explain)

    async def _run_deferring(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """:meth:`_run`, but a :class:`_RaiseAfterCommit` commits before it is raised."""
        deferred: list[NodeRefusal] = []

        async def wrapped(conn: Conn) -> T | None:
            try:
                return await fn(conn)
            except _RaiseAfterCommit as exc:
                deferred.append(exc.error)
                return None

        result = await self._run(wrapped)
        if deferred:
            raise deferred[0]
        assert result is not None
        return result

    async def release(
        self, user: UserRef, request: Recover3, *, now: float, peer: str
    ) -> ReleaseResult:
        async def job(conn: Conn) -> ReleaseResult:
            record = await self._version_row(conn, user, request.version, lock=True)
            if record is None:
                raise NodeRefusal(
                    ErrorKind.NOT_REGISTERED, "this node holds no such version for the user"
                )
            after, reply, outcome = node_recover3(record, request, now)
            if outcome is Recover3Outcome.STALE:
                return ReleaseResult(outcome=outcome, reply=None, record=record)
            assert record.attempt is not None
            cur = await conn.execute(
                """
                UPDATE versions SET guess_count = %s, attempt_used = 1
                WHERE tenant = %s AND user_id = %s AND version = %s AND attempt_id = %s
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
            if cur.rowcount != 1:  # pragma: no cover - the row is locked; defensive
                return ReleaseResult(outcome=Recover3Outcome.STALE, reply=None, record=record)
            locked = False
            if outcome is Recover3Outcome.MATCH:
                await self._audit(conn, user, "share_released", "ok", now, peer)
            else:
                await self._audit(conn, user, "unlock_failed", "bad_unlock_tag", now, peer)
                if after.locked:
                    locked = await self._lock(conn, user, request.version, now, peer)
            return ReleaseResult(outcome=outcome, reply=reply, record=after, locked=locked)

        return await self._run(job)

    async def claim_token(self, key: str, expires_at: float, *, now: float) -> bool:
        async def job(conn: Conn) -> bool:
            await conn.execute("DELETE FROM token_uses WHERE expires_at < %s", (now,))
            cur = await conn.execute(
                "INSERT INTO token_uses (key, expires_at) VALUES (%s, %s)"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                (key, expires_at),
            )
            return await cur.fetchone() is not None

        return await self._run(job)

    async def reset_guesses(
        self, user: UserRef, request: ResetGuesses, *, expires_at: float, now: float, peer: str
    ) -> None:
        async def job(conn: Conn) -> None:
            record = await self._version_row(conn, user, request.version, lock=True)
            check_reset(record, request, now)
            assert record is not None
            await conn.execute("DELETE FROM token_uses WHERE expires_at < %s", (now,))
            cur = await conn.execute(
                "INSERT INTO token_uses (key, expires_at) VALUES (%s, %s)"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                (nonce_claim_key(user, request.nonce), expires_at),
            )
            if await cur.fetchone() is None:
                raise NodeRefusal(ErrorKind.STALE_ATTEMPT, "reset nonce already used")
            await conn.execute(
                "UPDATE versions SET guess_count = %s WHERE tenant = %s AND user_id = %s"
                " AND version = %s AND sealed_oprf_key_share IS NOT NULL",
                (node_reset(record).guess_count, user.tenant, user.user_id, request.version),
            )
            await self._audit(conn, user, "guesses_reset", "ok", now, peer)

        await self._run(job)

    async def lock_version(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        async def job(conn: Conn) -> bool:
            return await self._lock(conn, user, version, now, peer)

        return await self._run(job)

    async def append_audit(
        self, user: UserRef, op: str, outcome: str, *, now: float, peer: str
    ) -> None:
        async def job(conn: Conn) -> None:
            await self._audit(conn, user, op, outcome, now, peer)

        await self._run(job)

    async def read_audit(
        self, tenant: str, user_id: str | None, *, after_id: int, limit: int
    ) -> Sequence[AuditRecord]:
        async def job(conn: Conn) -> list[AuditRecord]:
            sql = "SELECT * FROM audit WHERE tenant = %s AND id > %s"
            args: list[Any] = [tenant, after_id]
            if user_id:
                sql += " AND user_id = %s"
                args.append(user_id)
            sql += " ORDER BY id LIMIT %s"
            args.append(limit)
            rows = await (await conn.execute(sql, args)).fetchall()
            return [audit_record(row) for row in rows]

        return await self._run(job)

    async def list_versions(
        self, tenant: str, *, after_user_id: str, limit: int
    ) -> Sequence[tuple[str, UserStatus]]:
        async def job(conn: Conn) -> list[tuple[str, UserStatus]]:
            users = await (
                await conn.execute(
                    "SELECT user_id, tombstone_epoch FROM users WHERE tenant = %s"
                    " AND user_id > %s ORDER BY user_id LIMIT %s",
                    (tenant, after_user_id, limit),
                )
            ).fetchall()
            if not users:
                return []
            versions = await (
                await conn.execute(
                    VERSION_METADATA_SQL + " WHERE tenant = %s AND user_id > %s AND user_id <= %s",
                    (tenant, after_user_id, users[-1]["user_id"]),
                )
            ).fetchall()
            return user_statuses(users, versions)

        return await self._run(job)

    async def prune_audit(self, before: float) -> int:
        async def job(conn: Conn) -> int:
            cur = await conn.execute("DELETE FROM audit WHERE time < %s", (before,))
            return int(cur.rowcount)

        return await self._run(job)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


async def open_postgres_store(
    url: str,
    sealer: Sealer,
    *,
    min_connections: int = DEFAULT_MIN_CONNECTIONS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> PostgresStore:
    """Connect a pool to ``url`` (a libpq URL) and return the store (not yet migrated).

    Fails fast with :class:`StoreError` naming the server (never the password) when no
    connection can be made within :data:`CONNECT_TIMEOUT_SECONDS`.
    """
    where = redact_url(url)
    # One probe connection first: a wrong URL or a stopped server fails at once with libpq's
    # reason, instead of after the pool's retries.
    try:
        probe = await AsyncConnection.connect(url, connect_timeout=int(CONNECT_TIMEOUT_SECONDS))
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot connect to PostgreSQL at {where}: {_first_line(exc)}; check that the"
            " server runs and storage.url is right"
        ) from None
    await probe.close()
    pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
        url,
        min_size=min_connections,
        max_size=max_connections,
        open=False,
        timeout=CONNECT_TIMEOUT_SECONDS,
        kwargs={"autocommit": True, "row_factory": dict_row},
        name="pakr-node",
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
    except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
        await pool.close()
        raise StoreError(
            f"cannot connect to PostgreSQL at {where}: {type(exc).__name__}; check that the"
            " server runs and storage.url is right"
        ) from None
    return PostgresStore(pool, sealer, url=url)
