"""Pytest fixtures over :mod:`pgserver`: one throwaway server per session, one database per
test module, one schema per test (cheap isolation inside a module's database).

Import them into a test module (or a conftest) by name. When the server cannot start the
fixture fails with the reason under ``CI`` (the suite must never skip PostgreSQL silently
there) and skips with the reason locally.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from .pgserver import PgServer, PostgresUnavailable, start_server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"throwaway PostgreSQL cannot start in CI: {exc}")
        pytest.skip(f"throwaway PostgreSQL cannot start: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_database_url(postgres_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this test module's own."""
    url = postgres_server.create_database(request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """A URL whose ``search_path`` is a fresh schema: an empty store for each test."""
    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return pg_database_url + "&options=" + f"-csearch_path%3D{schema}"
