"""Fixtures for the PostgreSQL tests: the throwaway server (see pg_fixtures.py and pgserver.py).

The node tests' helpers (``node_helpers``: registrations driven by the pure client steps)
are reused from ``tests/node`` rather than duplicated.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from .pg_fixtures import pg_database_url, pg_url, postgres_server

__all__ = ["pg_database_url", "pg_url", "postgres_server"]
