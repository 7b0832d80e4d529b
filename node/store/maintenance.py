"""Maintenance transactions, written once for both stores: the sweeper's and re-wrapping's.

The lockouts come in keyset-paged batches from the ``versions_spent`` partial index (only
live versions whose guesses are spent are in it), each batch one transaction that re-checks
every row under its lock with ``VersionRecord.lockout_due``; superseded pending versions are
dropped one user per transaction (``superseded_pending`` decides). Re-wrapping reads only the
rows under one generation (``versions_by_key_generation``) and rewrites their wrapped keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol, TypeVar

from pakr.node.store.base import SweepResult
from pakr.node.store.schema import Dialect
from pakr.node.store.sealing import Sealer
from pakr.node.store.transactions import (
    Deferred,
    Fetch,
    Program,
    Q,
    _for_update,
    audit,
    load_user,
    lock_version,
    save_user,
    superseded_pending,
)
from pakr.proto.messages import UserRef
from pakr.proto.records import UserRecord

T = TypeVar("T")


# ---------------------------------------------------------------- sweeping

SWEEP_BATCH = 200


def sweep_lockouts(
    dialect: Dialect, sealer: Sealer, after: tuple[str, str, bytes], now: float, peer: str
) -> Program[tuple[int, tuple[str, str, bytes] | None]]:
    """One batch of due lockouts after the key ``after``: (erased, next key or None)."""
    rows = yield Q(
        "SELECT tenant, user_id, version FROM versions"
        " WHERE sealed_oprf_key_share IS NOT NULL AND guess_count >= max_guesses"
        " AND (tenant > :t OR (tenant = :t AND (user_id > :u"
        " OR (user_id = :u AND version > :v))))"
        " ORDER BY tenant, user_id, version LIMIT :n",
        {"t": after[0], "u": after[1], "v": after[2], "n": SWEEP_BATCH},
        Fetch.ALL,
    )
    erased = 0
    for row in rows:
        user = UserRef(tenant=row["tenant"], user_id=row["user_id"])
        erased += yield from lock_version(dialect, sealer, user, bytes(row["version"]), now, peer)
    if len(rows) < SWEEP_BATCH:
        return erased, None
    last = rows[-1]
    return erased, (last["tenant"], last["user_id"], bytes(last["version"]))


def superseded_users(limit: int) -> Program[list[UserRef]]:
    rows = yield Q(
        "SELECT p.tenant, p.user_id FROM versions p JOIN versions c"
        " ON c.tenant = p.tenant AND c.user_id = p.user_id AND c.slot = 'committed'"
        " WHERE p.slot = 'pending' AND c.epoch >= p.epoch LIMIT :n",
        {"n": limit},
        Fetch.ALL,
    )
    return [UserRef(tenant=row["tenant"], user_id=row["user_id"]) for row in rows]


def drop_superseded(
    dialect: Dialect, sealer: Sealer, user: UserRef, now: float, peer: str
) -> Program[bool]:
    current = yield from load_user(dialect, sealer, user, lock=True)
    if current is None or not superseded_pending(current):
        return False
    yield from save_user(
        sealer, user, UserRecord(current.committed, None, current.tombstone_epoch), now
    )
    yield from audit(user, "superseded", "pending_dropped", now, peer)
    return True


# ---------------------------------------------------------------- key generations


def key_generation_uses() -> Program[dict[int, int]]:
    rows = yield Q(
        "SELECT key_generation AS g, count(*) AS n FROM versions"
        " WHERE key_generation IS NOT NULL GROUP BY key_generation",
        fetch=Fetch.ALL,
    )
    return {int(row["g"]): int(row["n"]) for row in rows}


def rewrap(
    dialect: Dialect, sealer: Sealer, generation: int, now: float, limit: int
) -> Program[int]:
    rows = yield Q(
        _for_update(
            "SELECT tenant, user_id, version, wrapped_key FROM versions"
            " WHERE key_generation = :g LIMIT :n",
            dialect,
        ),
        {"g": generation, "n": limit},
        Fetch.ALL,
    )
    updates = []
    for row in rows:
        user = UserRef(tenant=row["tenant"], user_id=row["user_id"])
        version = bytes(row["version"])
        target, wrapped = sealer.rewrap(user, version, generation, bytes(row["wrapped_key"]), now)
        updates.append(
            {"t": user.tenant, "u": user.user_id, "v": version, "target": target, "w": wrapped}
        )
    if not updates:
        return 0
    done = yield Q(
        "UPDATE versions SET key_generation = :target, wrapped_key = :w"
        " WHERE tenant = :t AND user_id = :u AND version = :v AND key_generation = :g",
        fetch=Fetch.COUNT,
        many=[{**u, "g": generation} for u in updates],
    )
    return int(done)


class Runner(Protocol):
    def __call__(self, make: Callable[[], Program[T | Deferred]], /) -> Awaitable[T]: ...


async def sweep(
    sealer: Sealer, dialect: Dialect, run: Runner, now: float, peer: str
) -> SweepResult:
    locked = 0
    after: tuple[str, str, bytes] | None = ("", "", b"")
    while after is not None:
        erased, after = await run(partial(sweep_lockouts, dialect, sealer, after, now, peer))
        locked += erased
    superseded = 0
    while True:
        users: list[UserRef] = await run(lambda: superseded_users(SWEEP_BATCH))
        dropped = 0
        for user in users:
            dropped += await run(partial(drop_superseded, dialect, sealer, user, now, peer))
        superseded += dropped
        if len(users) < SWEEP_BATCH or not dropped:
            break
    return SweepResult(locked=locked, superseded=superseded)
