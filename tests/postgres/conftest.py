"""Fixtures for the PostgreSQL tests: the throwaway server (see pg_fixtures.py and pgserver.py).

The node tests' helpers (``node_helpers``: registrations driven by the pure client steps)
are reused from ``tests/node`` rather than duplicated.
"""

from .pg_fixtures import pg_database_url, pg_url, postgres_server

__all__ = ["pg_database_url", "pg_url", "postgres_server"]
