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

The transactions themselves are :mod:`pakr.node.store.transactions` programs, shared with the
SQLite store; this module only runs them (statements with ``:name`` parameters become
psycopg's ``%(name)s``). The schema is :mod:`pakr.node.store.schema`'s, column for column
the SQLite store's, so :mod:`pakr.node.backup` moves rows between the two verbatim.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pakr.node.store import heal_tx, maintenance, migrations
from pakr.node.store import transactions as tx
from pakr.node.store.base import AuditRecord, GuessResult, ReleaseResult, StoreError, SweepResult
from pakr.node.store.maintenance import sweep
from pakr.node.store.rows import version_row
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
from pakr.proto.records import UserRecord, VersionRecord

log = logging.getLogger("pakr.node.store")

T = TypeVar("T")
Conn = AsyncConnection[DictRow]
PG = Dialect.POSTGRESQL

DEFAULT_MIN_CONNECTIONS = 2
DEFAULT_MAX_CONNECTIONS = 16
CONNECT_TIMEOUT_SECONDS = 10.0
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@functools.lru_cache(maxsize=256)
def pg_sql(text: str) -> str:
    """A program's ``:name`` parameters as psycopg's ``%(name)s`` (``%`` escaped)."""
    return _PARAM.sub(r"%(\1)s", text.replace("%", "%%"))


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


async def drive(conn: Conn, program: Program[T]) -> T:
    """Run a :mod:`~pakr.node.store.transactions` program on ``conn``."""
    try:
        query = next(program)
        while True:
            if query.many is not None:
                cur = conn.cursor()
                await cur.executemany(pg_sql(query.sql), query.many)
            else:
                cur = await conn.execute(pg_sql(query.sql), query.params)
            result: Any = None
            if query.fetch is Fetch.ONE:
                result = await cur.fetchone()
            elif query.fetch is Fetch.ALL:
                result = await cur.fetchall()
            elif query.fetch is Fetch.COUNT:
                result = cur.rowcount
            query = program.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


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
    def sealer(self) -> Sealer:
        """The sealer (its key ring is what key rotation works on)."""
        return self._sealer

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        """The connection pool (for backup, benchmarks and tests)."""
        return self._pool

    async def _run(
        self, make: Callable[[], Program[T | Deferred]], *, transaction: bool = True
    ) -> T:
        """Run a fresh program from ``make`` in one transaction (or, for a single statement,
        in autocommit). Database failures become :class:`StoreError`; a :class:`Deferred`
        refusal is raised after its transaction committed."""
        if self._closed:
            raise StoreError("the store is closed")
        try:
            async with self._pool.connection() as conn:
                if transaction:
                    async with conn.transaction():
                        result = await drive(conn, make())
                else:
                    result = await drive(conn, make())
        except psycopg.Error as exc:
            raise StoreError(
                f"PostgreSQL ({self._where}) failed: {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        except TimeoutError:
            raise StoreError(
                f"no PostgreSQL connection to {self._where} became free in time; check the"
                " server and the pool size"
            ) from None
        if isinstance(result, Deferred):
            raise result.error
        return result

    async def migrate(self) -> int:
        return await self._run(lambda: migrations.migrate(PG, self._sealer))

    async def schema_version(self) -> int:
        """The schema version in the database (0 before the first migration)."""

        def program() -> Program[int]:
            row = yield tx.Q("SELECT to_regclass('schema_version') AS t", fetch=Fetch.ONE)
            if row is None or row["t"] is None:
                return 0
            found = yield tx.Q("SELECT version FROM schema_version", fetch=Fetch.ONE)
            return 0 if found is None else int(found["version"])

        return await self._run(program)

    def version_row(self, user: UserRef, slot: str, rec: VersionRecord) -> tuple[Any, ...]:
        """The ``versions`` row (in schema column order) for a record, sealed."""
        return version_row(self._sealer, user, slot, rec)

    # ------------------------------------------------------------------ Store API

    async def get_user(self, user: UserRef) -> UserRecord | None:
        return await self._run(lambda: tx.load_user(PG, self._sealer, user, lock=False))

    async def register_pending(
        self, user: UserRef, request: Register2, *, node: NodeRef, now: float, peer: str
    ) -> bool:
        return await self._run(
            lambda: tx.register_pending(PG, self._sealer, user, request, node, now, peer)
        )

    async def commit(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        return await self._run(lambda: tx.commit(PG, self._sealer, user, version, now, peer))

    async def delete(self, user: UserRef, epoch: int, *, now: float, peer: str) -> bool:
        return await self._run(lambda: tx.delete(PG, self._sealer, user, epoch, now, peer))

    async def count_guess(
        self, user: UserRef, request: Recover2, *, nonce: bytes, now: float, peer: str
    ) -> GuessResult:
        args = (PG, self._sealer, user, request, nonce, now, peer)
        # The common case is one statement in its own (autocommit) transaction: the
        # conditional update and its audit row, durable when it returns.
        counted = await self._run(lambda: tx.count_guess_update(*args), transaction=False)
        if counted is not None:
            return counted
        return await self._run(lambda: tx.count_guess_explain(*args))

    async def release(
        self, user: UserRef, request: Recover3, *, now: float, peer: str
    ) -> ReleaseResult:
        return await self._run(lambda: tx.release(PG, self._sealer, user, request, now, peer))

    async def claim_token(self, key: str, expires_at: float, *, now: float) -> bool:
        return await self._run(lambda: tx.claim_token(key, expires_at, now))

    async def lock_version(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        return await self._run(lambda: tx.lock_version(PG, self._sealer, user, version, now, peer))

    async def append_audit(
        self, user: UserRef, op: str, outcome: str, *, now: float, peer: str
    ) -> None:
        await self._run(lambda: tx.audit(user, op, outcome, now, peer))

    async def read_audit(
        self, tenant: str, user_id: str | None, *, after_id: int, limit: int
    ) -> Sequence[AuditRecord]:
        return await self._run(lambda: tx.read_audit(tenant, user_id, after_id, limit))

    async def reset_guesses(
        self, user: UserRef, request: ResetGuesses, *, expires_at: float, now: float, peer: str
    ) -> None:
        await self._run(
            lambda: heal_tx.reset_guesses(PG, self._sealer, user, request, expires_at, now, peer)
        )

    async def list_versions(
        self, tenant: str, *, after_user_id: str, limit: int
    ) -> Sequence[tuple[str, UserStatus]]:
        return await self._run(lambda: heal_tx.list_versions(tenant, after_user_id, limit))

    async def prune_audit(self, before: float) -> int:
        return await self._run(lambda: tx.prune_audit(before))

    async def sweep(self, now: float, *, peer: str) -> SweepResult:
        return await sweep(self._sealer, PG, self._run, now, peer)

    async def key_generation_uses(self) -> dict[int, int]:
        return await self._run(maintenance.key_generation_uses)

    async def rewrap(self, generation: int, *, now: float, limit: int) -> int:
        return await self._run(lambda: maintenance.rewrap(PG, self._sealer, generation, now, limit))

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
