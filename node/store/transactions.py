"""Every Store transaction, written once for SQLite and PostgreSQL.

Each transaction is a *program*: a generator that yields :class:`Q` statements and receives
their results, then returns the method's result. The SQLite store runs programs on its
database thread, the PostgreSQL store awaits each statement on a pooled connection; neither
re-states a decision. The decisions themselves come from the pure steps of :mod:`pakr.proto`
(``node_register2``, ``node_register3``, ``node_delete``, ``admit_recover2``,
``node_recover3``, ``VersionRecord.lockout_due``) and from :func:`superseded_pending` here.

Statements use ``:name`` parameters and SQL both databases accept; the few places where the
dialects differ are named by :class:`~pakr.node.store.schema.Dialect` in this module only
(row locks, the migration lock, the guess statement's audit row). A program may return a
:class:`Deferred` refusal: the driver commits what the program wrote (a lazy lockout) and
then raises it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pakr.node.store import schema
from pakr.node.store.base import (
    AuditRecord,
    GuessResult,
    ReleaseResult,
    StoreError,
)
from pakr.node.store.rows import audit_record, from_u64, u64, version_record, version_row
from pakr.node.store.schema import Dialect
from pakr.node.store.sealing import Sealer
from pakr.proto.counting import Admission, Recover3Outcome, admit_recover2, node_recover3
from pakr.proto.delete import node_delete
from pakr.proto.errors import NodeRefusal
from pakr.proto.messages import NodeRef, Recover2, Recover3, Register2, UserRef
from pakr.proto.node_refusals import locked_out, no_guesses, not_registered
from pakr.proto.records import UserRecord, VersionRecord
from pakr.proto.register import node_register2, node_register3

log = logging.getLogger("pakr.node.store")

T = TypeVar("T")


class Fetch(enum.Enum):
    NONE = "none"
    ONE = "one"  # the first row or None
    ALL = "all"
    COUNT = "count"  # the number of rows changed


@dataclass(frozen=True, slots=True)
class Q:
    """One statement of a program; ``erases`` marks one that drops sealed values. With
    ``many`` the statement runs once per parameter set, in one batch (``COUNT``: in total)."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    fetch: Fetch = Fetch.NONE
    erases: bool = False
    many: Sequence[Mapping[str, Any]] | None = None


Program = Generator[Q, Any, T]


@dataclass(frozen=True, slots=True)
class Deferred:
    """A refusal raised only after the program's writes commit (a lazy lockout)."""

    error: NodeRefusal


# ---------------------------------------------------------------- decisions


def superseded_pending(record: UserRecord) -> bool:
    """Whether the user's pending version is superseded: a committed version of the same or
    a newer epoch exists (so the pending one can never be committed). A pending version that
    is the user's only one is never superseded."""
    return (
        record.pending is not None
        and record.committed is not None
        and record.committed.epoch >= record.pending.epoch
    )


def _key(user: UserRef, version: bytes | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"tenant": user.tenant, "user": user.user_id}
    if version is not None:
        params["version"] = version
    return params


def _for_update(select: str, dialect: Dialect, lock: bool = True) -> str:
    """``select`` locking its rows until the transaction ends (PostgreSQL; SQLite has one
    writer, whose transaction excludes every other)."""
    return select + " FOR UPDATE" if lock and dialect is Dialect.POSTGRESQL else select


# ---------------------------------------------------------------- rows

VERSION_UPSERT = schema.upsert(schema.VERSIONS)
_ERASE = (
    "UPDATE versions SET sealed_oprf_key_share = NULL, sealed_secret_share = NULL,"
    " sealed_unlock_tag = NULL, encrypted_secret = NULL, attempt_id = NULL,"
    " attempt_element = NULL, attempt_nonce = NULL, attempt_started_at = NULL,"
    " attempt_used = 0, locked_at = :now, key_generation = NULL, wrapped_key = NULL"
    " WHERE tenant = :tenant AND user_id = :user AND version = :version"
    " AND sealed_oprf_key_share IS NOT NULL"
)


def load_user(
    dialect: Dialect, sealer: Sealer, user: UserRef, *, lock: bool
) -> Program[UserRecord | None]:
    head = yield Q(
        _for_update(
            "SELECT tombstone_epoch FROM users WHERE tenant = :tenant AND user_id = :user",
            dialect,
            lock,
        ),
        _key(user),
        Fetch.ONE,
    )
    if head is None:
        return None
    rows = yield Q(
        _for_update(
            "SELECT * FROM versions WHERE tenant = :tenant AND user_id = :user", dialect, lock
        ),
        _key(user),
        Fetch.ALL,
    )
    committed = pending = None
    for row in rows:
        if row["slot"] == "committed":
            committed = version_record(sealer, user, row)
        else:
            pending = version_record(sealer, user, row)
    return UserRecord(
        committed=committed, pending=pending, tombstone_epoch=from_u64(head["tombstone_epoch"])
    )


def lock_user(
    dialect: Dialect, sealer: Sealer, user: UserRef, now: float
) -> Program[UserRecord | None]:
    """Lock the user (creating a placeholder row, rolled back on refusal) and read it: two
    writers registering a new user at once serialize on the placeholder's key. ``None``
    means the user did not exist before this transaction."""
    inserted = yield Q(
        "INSERT INTO users (tenant, user_id, tombstone_epoch, updated_at)"
        " VALUES (:tenant, :user, :epoch, :now) ON CONFLICT (tenant, user_id) DO NOTHING",
        {**_key(user), "epoch": u64(0), "now": now},
        Fetch.COUNT,
    )
    current = yield from load_user(dialect, sealer, user, lock=True)
    return None if inserted == 1 else current


def save_user(sealer: Sealer, user: UserRef, new: UserRecord, now: float) -> Program[None]:
    """Write ``new`` as the user's record, in place (the caller holds the row locks).

    Versions not kept are deleted (their wrapped keys with them); kept ones are re-sealed
    under fresh version keys. The pure steps never swap slots between two kept versions
    (Register3 drops the old committed one), so each upsert finds its slot free."""
    yield Q(
        "UPDATE users SET tombstone_epoch = :epoch, updated_at = :now"
        " WHERE tenant = :tenant AND user_id = :user",
        {**_key(user), "epoch": u64(new.tombstone_epoch), "now": now},
    )
    keep = [rec.version for rec in (new.committed, new.pending) if rec is not None]
    keep += [b""] * (2 - len(keep))  # never a version id (NOT IN with NULL matches nothing)
    yield Q(
        "DELETE FROM versions WHERE tenant = :tenant AND user_id = :user"
        " AND version NOT IN (:k1, :k2)",
        {**_key(user), "k1": keep[0], "k2": keep[1]},
        erases=True,
    )
    for slot, rec in (("committed", new.committed), ("pending", new.pending)):
        if rec is not None:
            row = version_row(sealer, user, slot, rec, now=now)
            yield Q(VERSION_UPSERT, dict(zip(schema.VERSION_COLUMNS, row, strict=True)))


def audit(user: UserRef, op: str, outcome: str, now: float, peer: str) -> Program[None]:
    yield Q(
        "INSERT INTO audit (time, tenant, user_id, op, outcome, peer)"
        " VALUES (:now, :tenant, :user, :op, :outcome, :peer)",
        {**_key(user), "now": now, "op": op, "outcome": outcome, "peer": peer},
    )


def read_version(
    dialect: Dialect, sealer: Sealer, user: UserRef, version: bytes, *, lock: bool
) -> Program[VersionRecord | None]:
    row = yield Q(
        _for_update(
            "SELECT * FROM versions WHERE tenant = :tenant AND user_id = :user"
            " AND version = :version",
            dialect,
            lock,
        ),
        _key(user, version),
        Fetch.ONE,
    )
    return None if row is None else version_record(sealer, user, row)


def lock_version(
    dialect: Dialect, sealer: Sealer, user: UserRef, version: bytes, now: float, peer: str
) -> Program[bool]:
    """Erase the version's shares and wrapped key if its lockout is due at ``now``."""
    record = yield from read_version(dialect, sealer, user, version, lock=True)
    if record is None or not record.lockout_due(now):
        return False
    erased = yield Q(_ERASE, {**_key(user, version), "now": now}, Fetch.COUNT, erases=True)
    if erased:
        yield from audit(user, "locked", "locked", now, peer)
        log.info("version locked out after its last failed guess")
    return bool(erased)


# ---------------------------------------------------------------- registration and delete


def register_pending(
    dialect: Dialect,
    sealer: Sealer,
    user: UserRef,
    request: Register2,
    node: NodeRef,
    now: float,
    peer: str,
) -> Program[bool]:
    current = yield from lock_user(dialect, sealer, user, now)
    new = node_register2(current, request, user=user, node=node, now=now)
    if new is None:
        return False
    yield from save_user(sealer, user, new, now)
    yield from audit(user, "registered", "pending", now, peer)
    return True


def commit(
    dialect: Dialect, sealer: Sealer, user: UserRef, version: bytes, now: float, peer: str
) -> Program[bool]:
    new = node_register3((yield from load_user(dialect, sealer, user, lock=True)), version)
    if new is None:
        return False
    yield from save_user(sealer, user, new, now)
    yield from audit(user, "registered", "committed", now, peer)
    return True


def delete(
    dialect: Dialect, sealer: Sealer, user: UserRef, epoch: int, now: float, peer: str
) -> Program[bool]:
    new = node_delete((yield from lock_user(dialect, sealer, user, now)), epoch)
    if new is None:
        return False
    yield from save_user(sealer, user, new, now)
    yield from audit(user, "deleted", f"epoch={epoch}", now, peer)
    return True


# ---------------------------------------------------------------- recovery

# Recover2's guess: ONE conditional update (count below the limit, shares present, not a
# retry of the latest attempt). Under PostgreSQL's READ COMMITTED a concurrent update of the
# row waits for the other to commit and re-checks the condition on the new row, so no
# interleaving of replicas spends more than max_guesses; SQLite has one writer. PostgreSQL
# writes the audit row in the same statement (one round trip, in autocommit).
_GUESS_UPDATE = """
UPDATE versions
SET guess_count = guess_count + 1, attempt_id = :aid, attempt_element = :b,
    attempt_nonce = :nonce, attempt_started_at = :now, attempt_used = 0
WHERE tenant = :tenant AND user_id = :user AND version = :version
  AND sealed_oprf_key_share IS NOT NULL
  AND guess_count < max_guesses
  AND NOT COALESCE(attempt_id = :aid AND attempt_element = :b, FALSE)
RETURNING *
"""
_GUESS_STATEMENT = {
    Dialect.SQLITE: _GUESS_UPDATE,
    Dialect.POSTGRESQL: """WITH counted AS ({update}), audited AS (
    INSERT INTO audit (time, tenant, user_id, op, outcome, peer)
    SELECT :now, tenant, user_id, 'guess_used', 'remaining=' || (max_guesses - guess_count),
           :peer
    FROM counted
)
SELECT * FROM counted
""".replace("{update}", _GUESS_UPDATE),
}


def _guess_params(
    user: UserRef, request: Recover2, nonce: bytes, now: float, peer: str
) -> dict[str, Any]:
    return {
        **_key(user, request.version),
        "aid": request.attempt_id,
        "b": request.blinded_element.encoded,
        "nonce": nonce,
        "now": now,
        "peer": peer,
    }


def count_guess_update(
    dialect: Dialect,
    sealer: Sealer,
    user: UserRef,
    request: Recover2,
    nonce: bytes,
    now: float,
    peer: str,
) -> Program[GuessResult | None]:
    """The guess statement (and its audit row); ``None`` when it matched nothing."""
    params = _guess_params(user, request, nonce, now, peer)
    row = yield Q(_GUESS_STATEMENT[dialect], params, Fetch.ONE)
    if row is None:
        return None
    record = version_record(sealer, user, row)
    if dialect is Dialect.SQLITE:
        yield from audit(user, "guess_used", f"remaining={record.guesses_remaining}", now, peer)
    return GuessResult(record=record, counted=True)


def count_guess_explain(
    dialect: Dialect,
    sealer: Sealer,
    user: UserRef,
    request: Recover2,
    nonce: bytes,
    now: float,
    peer: str,
) -> Program[GuessResult | Deferred]:
    """The guess statement matched nothing: the locked row says why (``admit_recover2``)."""
    record = yield from read_version(dialect, sealer, user, request.version, lock=True)
    if record is None:
        raise not_registered()
    admission = admit_recover2(record, request, now)
    if admission is Admission.REPLAY:
        return GuessResult(record=record, counted=False)
    if admission is Admission.LOCKED:
        yield from lock_version(dialect, sealer, user, request.version, now, peer)
        return Deferred(locked_out())
    if admission is Admission.NO_GUESSES:
        raise no_guesses()
    # COUNT: the row changed after the statement looked (another replica's Recover3 reset
    # it); we hold its lock now, so the same statement decides for good.
    again = yield from count_guess_update(dialect, sealer, user, request, nonce, now, peer)
    if again is None:  # pragma: no cover - the row is locked and admits a guess
        raise StoreError("guess count update and stored row disagree")
    return again


def count_guess(
    dialect: Dialect,
    sealer: Sealer,
    user: UserRef,
    request: Recover2,
    nonce: bytes,
    now: float,
    peer: str,
) -> Program[GuessResult | Deferred]:
    """Both halves in one transaction (what a single-writer store runs)."""
    counted = yield from count_guess_update(dialect, sealer, user, request, nonce, now, peer)
    if counted is not None:
        return counted
    return (yield from count_guess_explain(dialect, sealer, user, request, nonce, now, peer))


def release(
    dialect: Dialect, sealer: Sealer, user: UserRef, request: Recover3, now: float, peer: str
) -> Program[ReleaseResult | Deferred]:
    record = yield from read_version(dialect, sealer, user, request.version, lock=True)
    if record is None:
        raise not_registered()
    if record.lockout_due(now):  # the last guess's grace ran out: too late even to unlock
        yield from lock_version(dialect, sealer, user, request.version, now, peer)
        return Deferred(locked_out())
    after, reply, outcome = node_recover3(record, request, now)
    if outcome is Recover3Outcome.STALE:
        return ReleaseResult(outcome=outcome, reply=None, record=record)
    assert record.attempt is not None
    changed = yield Q(
        "UPDATE versions SET guess_count = :count, attempt_used = 1"
        " WHERE tenant = :tenant AND user_id = :user AND version = :version"
        " AND attempt_id = :aid AND attempt_used = 0 AND sealed_oprf_key_share IS NOT NULL",
        {
            **_key(user, request.version),
            "count": after.guess_count,
            "aid": record.attempt.attempt_id,
        },
        Fetch.COUNT,
    )
    if changed != 1:  # pragma: no cover - the row is locked (or the writer single)
        return ReleaseResult(outcome=Recover3Outcome.STALE, reply=None, record=record)
    locked = False
    if outcome is Recover3Outcome.MATCH:
        yield from audit(user, "share_released", "ok", now, peer)
    else:
        yield from audit(user, "unlock_failed", "bad_unlock_tag", now, peer)
        if after.locked:
            locked = yield from lock_version(dialect, sealer, user, request.version, now, peer)
    return ReleaseResult(outcome=outcome, reply=reply, record=after, locked=locked)


# ---------------------------------------------------------------- tokens and audit


def claim_token(key: str, expires_at: float, now: float) -> Program[bool]:
    yield Q("DELETE FROM token_uses WHERE expires_at < :now", {"now": now})
    row = yield Q(
        "INSERT INTO token_uses (key, expires_at) VALUES (:key, :exp)"
        " ON CONFLICT (key) DO NOTHING RETURNING key",
        {"key": key, "exp": expires_at},
        Fetch.ONE,
    )
    return row is not None


def read_audit(
    tenant: str, user_id: str | None, after_id: int, limit: int
) -> Program[Sequence[AuditRecord]]:
    sql = "SELECT * FROM audit WHERE tenant = :tenant AND id > :after"
    params: dict[str, Any] = {"tenant": tenant, "after": after_id, "limit": limit}
    if user_id:
        sql += " AND user_id = :user"
        params["user"] = user_id
    rows = yield Q(sql + " ORDER BY id LIMIT :limit", params, Fetch.ALL)
    return [audit_record(row) for row in rows]


def prune_audit(before: float) -> Program[int]:
    count = yield Q("DELETE FROM audit WHERE time < :before", {"before": before}, Fetch.COUNT)
    return int(count)
