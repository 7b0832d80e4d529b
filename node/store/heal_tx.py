"""The store programs of issue 14's heal: ResetGuesses and the operator's ListVersions.

Same shape as :mod:`pakr.node.store.transactions` (generators of dialect-neutral queries that
both stores drive), kept apart so that module stays one place for the core protocol steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from pakr.node.store import transactions as tx
from pakr.node.store.rows import VERSION_METADATA_SQL, user_statuses
from pakr.node.store.schema import Dialect
from pakr.node.store.sealing import Sealer
from pakr.node.store.transactions import Fetch, Program, Q
from pakr.proto.messages import ResetGuesses, UserRef, UserStatus
from pakr.proto.node_refusals import nonce_used
from pakr.proto.reset import check_reset, node_reset, nonce_claim_key


def reset_guesses(
    dialect: Dialect,
    sealer: Sealer,
    user: UserRef,
    request: ResetGuesses,
    expires_at: float,
    now: float,
    peer: str,
) -> Program[None]:
    """``check_reset`` on the locked row (a refusal changes nothing and keeps the nonce),
    then spend the nonce, then count = 0 (``node_reset``), audited, in one transaction."""
    record = yield from tx.read_version(dialect, sealer, user, request.version, lock=True)
    check_reset(record, request, now)
    assert record is not None
    fresh = yield from tx.claim_token(nonce_claim_key(user, request.nonce), expires_at, now)
    if not fresh:
        raise nonce_used()
    yield Q(
        "UPDATE versions SET guess_count = :count WHERE tenant = :tenant AND user_id = :user"
        " AND version = :version AND sealed_oprf_key_share IS NOT NULL",
        {
            "count": node_reset(record).guess_count,
            "tenant": user.tenant,
            "user": user.user_id,
            "version": request.version,
        },
        Fetch.COUNT,
    )
    yield from tx.audit(user, "guesses_reset", "ok", now, peer)


def list_versions(
    tenant: str, after_user_id: str, limit: int
) -> Program[Sequence[tuple[str, UserStatus]]]:
    """A page of the tenant's users with their version metadata (no share is read)."""
    users = yield Q(
        "SELECT user_id, tombstone_epoch FROM users WHERE tenant = :tenant"
        " AND user_id > :after ORDER BY user_id LIMIT :limit",
        {"tenant": tenant, "after": after_user_id, "limit": limit},
        Fetch.ALL,
    )
    if not users:
        return []
    versions = yield Q(
        VERSION_METADATA_SQL + " WHERE tenant = :tenant AND user_id > :after AND user_id <= :last",
        {"tenant": tenant, "after": after_user_id, "last": users[-1]["user_id"]},
        Fetch.ALL,
    )
    return user_statuses(users, versions)
