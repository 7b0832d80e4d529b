"""One fake node: a user table in a dict, driven by the node-side steps of :mod:`pakr.proto`.

Each method takes the steps in the order a real node's store transaction does (lazy lockout,
admission, count, evaluate; release or keep the guess counted; spend a reset nonce once) and
raises the same typed :class:`~pakr.proto.errors.NodeRefusal` with the same words
(:mod:`pakr.proto.node_refusals`), so the SDK cannot tell it from a node behind gRPC. What a
real node adds around these (TLS, rate limits, durable storage, HPKE sealing on the wire) is
what this fake leaves out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pakr.proto.counting import (
    Admission,
    Recover3Outcome,
    admit_recover2,
    count_guess,
    node_recover2,
    node_recover3,
)
from pakr.proto.delete import node_delete
from pakr.proto.errors import ErrorKind, InvalidAuth, NodeRefusal
from pakr.proto.messages import (
    NONCE_LEN,
    AuditRow,
    NodeRef,
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    Register2,
    ResetGuesses,
    UserRef,
    UserStatus,
)
from pakr.proto.node_refusals import (
    bad_unlock_tag,
    locked_out,
    no_guesses,
    nonce_used,
    not_registered,
    stale_attempt,
)
from pakr.proto.records import UserRecord, VersionRecord
from pakr.proto.register import check_register2, node_register2, node_register3
from pakr.proto.reset import check_reset, issue_nonce, node_reset, nonce_claim_key, open_nonce
from pakr.proto.tokens import SCOPE_USER, Claims, check_claims, verify_token

PEER = "in-process"


class FakeNode:
    """One node's state and its side of every RPC, minus gRPC, TLS and SQL.

    ``clock`` is the node's time for guess and lockout bookkeeping (the cluster's, which
    tests can move forward); tokens are checked against the wall clock, as the SDK mints
    them. ``users`` maps each user to its record: read it to assert what a node holds.
    """

    def __init__(
        self,
        ref: NodeRef,
        tenant_keys: Mapping[str, Ed25519PublicKey],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ref = ref
        self.keys = dict(tenant_keys)
        self.users: dict[UserRef, UserRecord] = {}
        self.audit_log: list[AuditRow] = []
        self._clock = clock
        self._spent: set[str] = set()  # single-use token ids and reset nonces, spent
        self._reset_key = os.urandom(32)

    @property
    def now(self) -> float:
        """This node's clock."""
        return self._clock()

    def __repr__(self) -> str:
        return f"FakeNode({self.ref.name}, {len(self.users)} user(s))"

    # ------------------------------------------------------------------ tokens

    def authorize(
        self,
        user: UserRef,
        token: str,
        *,
        scope: str = SCOPE_USER,
        single_use: bool = False,
        fresh_within: float | None = None,
        any_user: bool = False,
    ) -> Claims:
        """Check ``token`` for this node and the request, as a node does (INVALID_AUTH)."""
        now = time.time()
        try:
            claims = verify_token(token, keys=self.keys, audience=self.ref.node_id.hex(), now=now)
            check_claims(
                claims, user, scope=scope, now=now, fresh_within=fresh_within, any_user=any_user
            )
        except InvalidAuth as exc:
            raise NodeRefusal(ErrorKind.INVALID_AUTH, str(exc)) from None
        if single_use:
            self._spend(
                f"{claims.tenant}:{claims.jti}",
                NodeRefusal(
                    ErrorKind.INVALID_AUTH,
                    "access token rejected: already used (mint a new token for every state change)",
                ),
            )
        return claims

    def _spend(self, key: str, refusal: NodeRefusal) -> None:
        if key in self._spent:
            raise refusal
        self._spent.add(key)

    # ------------------------------------------------------------------ records

    def _audit(self, user: UserRef, op: str, outcome: str) -> None:
        row = AuditRow(
            id=len(self.audit_log) + 1,
            time=self.now,
            tenant=user.tenant,
            user_id=user.user_id,
            op=op,
            outcome=outcome,
            peer=PEER,
        )
        self.audit_log.append(row)

    def _current(self, user: UserRef) -> UserRecord | None:
        """The user's record after erasing every version whose lockout is due."""
        record = self.users.get(user)
        if record is None:
            return None
        for version in (record.committed, record.pending):
            if version is not None and version.lockout_due(self.now):
                record = record.with_version(version.locked_out())
                self._audit(user, "locked", "locked")
        self.users[user] = record
        return record

    def _version(self, user: UserRef, version: bytes) -> tuple[UserRecord, VersionRecord]:
        state = self._current(user)
        record = state.version(version) if state is not None else None
        if state is None or record is None:
            raise not_registered()
        return state, record

    def _lock(self, user: UserRef, state: UserRecord, record: VersionRecord) -> None:
        self.users[user] = state.with_version(record.locked_out())
        self._audit(user, "locked", "locked")

    # ------------------------------------------------------------------ RPCs

    def status(self, user: UserRef, *, reset_nonce: bool = False) -> UserStatus:
        """Register1 (``reset_nonce=False``) or Recover1: the node's view of the user."""
        record = self._current(user)
        status = record.status() if record is not None else UserStatus()
        if not reset_nonce:
            return status
        nonce = issue_nonce(self._reset_key, user, self.now)
        return UserStatus(
            committed=status.committed,
            pending=status.pending,
            tombstone_epoch=status.tombstone_epoch,
            reset_nonce=nonce,
        )

    def register2(self, user: UserRef, request: Register2) -> None:
        """Store the new version as pending (or nothing, for a retry)."""
        check_register2(request, user=user, node=self.ref)
        new = node_register2(self._current(user), request, user=user, node=self.ref, now=self.now)
        if new is not None:
            self.users[user] = new
            self._audit(user, "registered", "pending")

    def register3(self, user: UserRef, version: bytes) -> None:
        """Commit the pending version (or nothing, for a retry)."""
        new = node_register3(self._current(user), version)
        if new is not None:
            self.users[user] = new
            self._audit(user, "registered", "committed")

    def recover2(self, user: UserRef, request: Recover2) -> Recover2Reply:
        """Count the guess (unless it replays the latest attempt) and evaluate."""
        state, record = self._version(user, request.version)
        admission = admit_recover2(record, request, self.now)
        if admission is Admission.LOCKED:
            self._lock(user, state, record)
            raise locked_out()
        if admission is Admission.NO_GUESSES:
            raise no_guesses()
        if admission is Admission.COUNT:
            record = count_guess(record, request, os.urandom(NONCE_LEN), self.now)
            self.users[user] = state.with_version(record)
            self._audit(user, "guess_used", f"remaining={record.guesses_remaining}")
        assert record.attempt is not None
        return node_recover2(record, request, nonce=record.attempt.nonce)

    def recover3(self, user: UserRef, request: Recover3) -> Recover3Reply:
        """Release the share against the unlock proof, or keep the guess counted."""
        state, record = self._version(user, request.version)
        if record.lockout_due(self.now):  # the last guess's grace ran out
            self._lock(user, state, record)
            raise locked_out()
        after, reply, outcome = node_recover3(record, request, self.now)
        if outcome is Recover3Outcome.STALE:
            raise stale_attempt()
        state = state.with_version(after)
        self.users[user] = state
        if outcome is Recover3Outcome.MATCH and reply is not None:
            self._audit(user, "share_released", "ok")
            return reply
        self._audit(user, "unlock_failed", "bad_unlock_tag")
        if after.lockout_due(self.now):
            self._lock(user, state, after)
        raise bad_unlock_tag(after.guesses_remaining)

    def reset_guesses(self, user: UserRef, request: ResetGuesses) -> None:
        """Reset this node's count of the recovered version (a nonce it issued, once)."""
        expires_at = open_nonce(self._reset_key, user, request.nonce, self.now)
        del expires_at  # spent nonces are kept for the fake's life
        state = self._current(user)
        record = state.version(request.version) if state is not None else None
        check_reset(record, request, self.now)
        assert state is not None and record is not None
        self._spend(nonce_claim_key(user, request.nonce), nonce_used())
        self.users[user] = state.with_version(node_reset(record))
        self._audit(user, "guesses_reset", "ok")

    def delete(self, user: UserRef, epoch: int) -> None:
        """Tombstone every version of the user (or nothing, for a retry)."""
        new = node_delete(self._current(user), epoch)
        if new is not None:
            self.users[user] = new
            self._audit(user, "deleted", f"epoch={epoch}")

    def read_audit(
        self, tenant: str, user_id: str | None, *, after_id: int, limit: int
    ) -> tuple[AuditRow, ...]:
        """The tenant's (or one user's) audit rows after ``after_id``, oldest first."""
        rows = [
            row
            for row in self.audit_log
            if row.tenant == tenant
            and row.id > after_id
            and (not user_id or row.user_id == user_id)
        ]
        return tuple(rows[:limit])

    # ------------------------------------------------------------------ inspection

    def guess_count(self, user: UserRef) -> int | None:
        """Wrong guesses counted against the user's committed version (``None``: none held)."""
        record = self.users.get(user)
        if record is None or record.committed is None:
            return None
        return record.committed.guess_count
