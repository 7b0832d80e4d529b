"""The storage interface of a node: an async :class:`Store` protocol every backend implements.

The protocol is shaped so that PostgreSQL can implement it honestly with several node
processes (replicas) sharing one database: every method is one transaction, decisions that
must not race are made *inside* that transaction (a row lock, or the single conditional
``UPDATE … RETURNING`` of :meth:`Store.count_guess`), and the protocol semantics come from
the pure steps of :mod:`pakr.proto` (``node_register2``, ``node_register3``, ``node_delete``,
``admit_recover2``, ``count_guess``, ``node_recover3``) rather than being re-derived in SQL.

Stores hold ``k_i``, ``s_i`` and the unlock tag sealed with the node's data key
(:mod:`pakr.node.store.sealing`) and return records unsealed.

Audit: every state change a method makes is audited by that method, in the same transaction,
so the audit log can never claim a change that did not commit nor miss one that did. Requests
refused before they reach the store (bad token, malformed input) are not audited: only
authenticated outcomes are. Operations and outcomes written:

================  ===============================================================
op                when (outcome)
================  ===============================================================
``registered``    Register2 stored a pending version (``pending``); Register3
                  committed it (``committed``)
``guess_used``    Recover2 counted a guess (``remaining=<n>``)
``share_released``Recover3 matched (``ok``)
``unlock_failed`` Recover3 mismatched (``bad_unlock_tag``)
``guesses_reset`` ResetGuesses reset a non-releasing holder's count (``ok``)
``locked``        a version was erased after its last failed guess (``locked``)
``superseded``    the sweeper dropped a pending version older than the committed
                  one (``pending_dropped``)
``deleted``       Delete tombstoned the user (``epoch=<n>``)
================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pakr.node.store.schema import SCHEMA_VERSION
from pakr.proto.counting import Recover3Outcome
from pakr.proto.errors import PakrError
from pakr.proto.messages import (
    NodeRef,
    Recover2,
    Recover3,
    Recover3Reply,
    Register2,
    ResetGuesses,
    UserRef,
    UserStatus,
)
from pakr.proto.records import UserRecord, VersionRecord

__all__ = ["SCHEMA_VERSION", "AuditRecord", "GuessResult", "ReleaseResult", "Store", "StoreError"]


class StoreError(PakrError):
    """The node's storage failed or holds data it cannot read; the node answers UNAVAILABLE.

    Messages name the table or operation, never a share or a key.
    """


@dataclass(frozen=True, slots=True)
class GuessResult:
    """What :meth:`Store.count_guess` decided.

    ``record`` is the version after the decision (unsealed: the servicer evaluates with its
    ``k_i``); its ``attempt`` holds the nonce to return. ``counted`` is False for a retry of
    the latest attempt, which is answered again for free.
    """

    record: VersionRecord
    counted: bool


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """What :meth:`Store.release` decided for a Recover3."""

    outcome: Recover3Outcome
    reply: Recover3Reply | None  # only on MATCH
    record: VersionRecord  # the version after the decision
    locked: bool = False  # this mismatch spent the last guess: the shares were erased


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the audit log."""

    id: int
    time: float
    tenant: str
    user_id: str
    op: str
    outcome: str
    peer: str


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one :meth:`Store.sweep` erased."""

    locked: int = 0  # versions whose lockout was due
    superseded: int = 0  # pending versions older than the user's committed version


class Store(Protocol):
    """Durable per-user state of one node identity (docs/protocol.md §6).

    Every mutating method is durable (committed, fsynced) before it returns, and refuses
    with :class:`~pakr.proto.errors.NodeRefusal` (typed kind) exactly as the pure protocol
    step it wraps would; a refusal changes nothing. ``now`` is passed in (unix seconds) so
    tests control time.
    """

    async def migrate(self) -> int:
        """Create or upgrade the schema; return the schema version now in force."""
        ...

    async def get_user(self, user: UserRef) -> UserRecord | None:
        """The user's record (shares unsealed), or ``None`` if the node never saw the user."""
        ...

    async def register_pending(
        self, user: UserRef, request: Register2, *, node: NodeRef, now: float, peer: str
    ) -> bool:
        """Register2: store ``request`` as the pending version (``node_register2`` decides,
        against the state read in the same transaction). False for an identical retry."""
        ...

    async def commit(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        """Register3: make the pending ``version`` committed, replacing the old committed
        version (``node_register3``). False when it already was committed."""
        ...

    async def delete(self, user: UserRef, epoch: int, *, now: float, peer: str) -> bool:
        """Delete: every version becomes a tombstone at ``epoch`` (``node_delete``).
        False when the user already was deleted at that epoch or later."""
        ...

    async def count_guess(
        self, user: UserRef, request: Recover2, *, nonce: bytes, now: float, peer: str
    ) -> GuessResult:
        """Recover2's durable guess count: ONE conditional update that increments the count
        while it is below ``max_guesses``, unless ``(attempt_id, B)`` is the stored latest
        attempt, and stores ``(attempt_id, B, nonce, now)`` as the latest attempt.

        When the update matches nothing the stored row decides (``admit_recover2``): the
        same attempt again → the stored record (same nonce, not counted); limit reached →
        ``NodeRefusal(NO_GUESSES)``; locked, or due for lockout (locked now) →
        ``NodeRefusal(LOCKED)``; no such user or version → ``NodeRefusal(NOT_REGISTERED)``.
        """
        ...

    async def release(
        self, user: UserRef, request: Recover3, *, now: float, peer: str
    ) -> ReleaseResult:
        """Recover3 (``node_recover3``): accept the latest ``(attempt_id, nonce)`` once; on a
        match reset the count to 0 and return the share; on a mismatch keep the guess counted
        and lock the version if that was the last one; a stale request changes nothing."""
        ...

    async def reset_guesses(
        self, user: UserRef, request: ResetGuesses, *, expires_at: float, now: float, peer: str
    ) -> None:
        """ResetGuesses, one transaction: ``check_reset`` on the named version (refusals change
        nothing), then spend the nonce (remembered until ``expires_at``; a replay refuses with
        ``NodeRefusal(STALE_ATTEMPT)``), then set the count to 0 (``node_reset``)."""
        ...

    async def lock_version(self, user: UserRef, version: bytes, *, now: float, peer: str) -> bool:
        """Erase the version's shares and ciphertext and keep a Locked marker, if its lockout
        is due at ``now`` (``VersionRecord.lockout_due``). True when it locked it now."""
        ...

    async def append_audit(
        self, user: UserRef, op: str, outcome: str, *, now: float, peer: str
    ) -> None:
        """Add an audit row for an event that changed nothing stored."""
        ...

    async def read_audit(
        self, tenant: str, user_id: str | None, *, after_id: int, limit: int
    ) -> Sequence[AuditRecord]:
        """The tenant's audit rows with id > ``after_id``, oldest first (one user's if given)."""
        ...

    async def list_versions(
        self, tenant: str, *, after_user_id: str, limit: int
    ) -> Sequence[tuple[str, UserStatus]]:
        """Up to ``limit`` of the tenant's users with ``user_id > after_user_id``, in user_id
        order, each with its version metadata (never a share): the operator's report."""
        ...

    async def prune_audit(self, before: float) -> int:
        """Delete audit rows older than ``before``; return how many."""
        ...

    async def claim_token(self, key: str, expires_at: float, *, now: float) -> bool:
        """Record a single-use token id until ``expires_at``: True the first time, False for
        a replay. Durable before it returns; forgets ids that expired before ``now``."""
        ...

    async def sweep(self, now: float, *, peer: str) -> SweepResult:
        """Erase every version whose lockout is due at ``now`` and drop every pending version
        superseded by a committed one of the same or a newer epoch (never a user's only
        version); needs no request. Runs in bounded batches, each one transaction."""
        ...

    async def key_generation_uses(self) -> dict[int, int]:
        """How many live rows each key generation wraps (erased rows wrap nothing)."""
        ...

    async def rewrap(self, generation: int, *, now: float, limit: int) -> int:
        """Re-wrap up to ``limit`` version keys wrapped under ``generation`` under the
        current one (the sealed fields stay as they are); return how many."""
        ...

    async def close(self) -> None:
        """Finish pending work and release the database."""
        ...
