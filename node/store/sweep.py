"""The store half of the sweeper: erase due lockouts and superseded pending versions.

Written once over a backend's transaction runner, so SQLite and PostgreSQL sweep alike: the
lockouts come in keyset-paged batches from the ``versions_spent`` partial index (only live
versions whose guesses are spent are in it), each batch one transaction that re-checks every
row under its lock with ``VersionRecord.lockout_due``; superseded pending versions are
dropped one user per transaction (``superseded_pending`` decides).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from pakr.node.store import transactions as tx
from pakr.node.store.base import SweepResult
from pakr.node.store.schema import Dialect
from pakr.node.store.sealing import Sealer
from pakr.node.store.transactions import Deferred, Program
from pakr.proto.messages import UserRef

T = TypeVar("T")


class Runner(Protocol):
    def __call__(self, make: Callable[[], Program[T | Deferred]], /) -> Awaitable[T]: ...


async def sweep(sealer: Sealer, dialect: Dialect, run: Runner, now: float, peer: str) -> SweepResult:
    locked = 0
    after: tuple[str, str, bytes] | None = ("", "", b"")
    while after is not None:
        start = after
        erased, after = await run(
            lambda: tx.sweep_lockouts(dialect, sealer, start, now, peer)
        )
        locked += erased
    superseded = 0
    while True:
        users: list[UserRef] = await run(lambda: tx.superseded_users(tx.SWEEP_BATCH))
        dropped = 0
        for user in users:
            one = user
            dropped += await run(lambda: tx.drop_superseded(dialect, sealer, one, now, peer))
        superseded += dropped
        if len(users) < tx.SWEEP_BATCH or not dropped:
            break
    return SweepResult(locked=locked, superseded=superseded)
