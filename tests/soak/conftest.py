"""The soak's PostgreSQL variant uses the suite's throwaway server (fails under CI if absent)."""

from tests.postgres.pg_fixtures import postgres_server

__all__ = ["postgres_server"]
