"""Erasure on a live node: the sweeper needs no request, and no reader stalls the writer.

A real gRPC node on SQLite or PostgreSQL, a settable clock: a user spends the last guess
and gives up (no Recover3); once the clock passes the grace the sweeper erases the shares
with no request. Meanwhile a reader holds a read transaction on the database (what a copy
tool or a long report does): another user's registration still succeeds, and on SQLite the
erased bytes leave the database files as soon as the reader lets go (the checkpoint retries
in the background instead of blocking the writer).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pakr.proto.messages import LOCKOUT_GRACE_SECONDS, UserRef
from tests.node.conftest import RunningNode, start_node
from tests.node.test_servicer import registered
from tests.postgres.pg_fixtures import pg_database_url, pg_url, postgres_server

__all__ = ["pg_database_url", "pg_url", "postgres_server"]

SWEEP_SECONDS = 0.2
GIVES_UP = UserRef("acme", "gives-up@example.com")
NEWCOMER = UserRef("acme", "newcomer@example.com")


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> float:
    """Poll ``condition``; the seconds it took (fails the test after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def live(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunningNode]:
    storage = "sqlite:///node.db"
    if backend == "postgresql":
        storage = request.getfixturevalue("pg_url")
    node = start_node(tmp_path / "node", storage=storage, sweep_seconds=SWEEP_SECONDS)
    try:
        yield node
    finally:
        node.stop()


def locked(node: RunningNode, user: UserRef) -> bool:
    record = node.run(node.server.store.get_user(user))
    return bool(record is not None and record.committed is not None and record.committed.locked)


def db_files(node: RunningNode) -> bytes:
    return b"".join(p.read_bytes() for p in node.db.parent.glob("node.db*"))


def test_sweeper_erases_with_no_request_and_a_reader_stalls_nothing(
    live: RunningNode, backend: str, pg_url_or_none: str | None
) -> None:
    client, reg = registered(live, GIVES_UP, max_guesses=1)
    client.wrong_guess(reg)  # the last guess, and no Recover3: the user gave up
    secret_bytes = reg.request.encrypted_secret  # stored as is until erased
    time.sleep(3 * SWEEP_SECONDS)
    assert not locked(live, GIVES_UP)  # inside the grace nothing is erased
    if backend == "sqlite":
        assert secret_bytes in db_files(live)
        reader = sqlite3.connect(live.db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM versions").fetchone()  # holds a snapshot
        close: Callable[[], None] = lambda: reader.execute("COMMIT")  # noqa: E731
    else:
        assert pg_url_or_none is not None
        conn = psycopg.connect(pg_url_or_none)
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SELECT count(*) FROM versions").fetchone()
        close = conn.rollback
    try:
        live.clock.offset += LOCKOUT_GRACE_SECONDS + 1
        delay = wait_for(lambda: locked(live, GIVES_UP))
        assert delay < 30  # bounded by the sweep interval (the figure goes in the report)
        registered(live, NEWCOMER)  # another user's registration goes through meanwhile
        assert live.server.sweeper is not None
        assert live.server.metrics.erasures.labels("lockout")._value.get() == 1
        if backend == "sqlite":  # the reader keeps the old pages: the checkpoint waits
            assert secret_bytes in db_files(live)
            store = live.server.store
            wait_for(lambda: store.checkpointer.busy > 0)  # type: ignore[attr-defined]
    finally:
        close()
    if backend == "sqlite":
        wait_for(lambda: secret_bytes not in db_files(live))  # the checkpoint caught up


@pytest.fixture
def pg_url_or_none(backend: str, request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("pg_url")) if backend == "postgresql" else None
