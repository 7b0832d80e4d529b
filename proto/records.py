"""What a node stores per user, as frozen dataclasses (docs/protocol.md §6).

A user has at most one committed and one pending :class:`VersionRecord`, each with its own
guess count and latest attempt, plus a tombstone epoch after a delete. The secret-bearing
part of a version (:class:`ShareMaterial`) is sealed with the node's data key by the store
and is ``None`` once the version is locked out: erased, so a later compromise finds nothing.

The node-side protocol steps (``register.py``, ``recover.py``, ``delete.py``) are pure
functions from one of these to the next; stores persist them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pakr.proto.group import Element, Scalar
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import LOCKOUT_GRACE_SECONDS, UserStatus, VersionInfo


@dataclass(frozen=True, slots=True)
class ShareMaterial:
    """The fields sealed at rest and erased on lockout."""

    oprf_key_share: Scalar = field(repr=False)
    secret_share: Scalar = field(repr=False)
    unlock_tag: bytes = field(repr=False)
    encrypted_secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The latest Recover2 of a version: a retry with the same id and element is free."""

    attempt_id: bytes
    blinded_element: bytes
    nonce: bytes
    started_at: float
    used: bool = False  # a Recover3 (right or wrong) consumed it


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One version of a user's registration on this node."""

    version: bytes
    epoch: int
    argon2: Argon2Params
    max_guesses: int
    guess_count: int
    shares: ShareMaterial | None  # None: locked out, erased
    oprf_public_share: Element
    oprf_key_signature: bytes
    verifying_key: bytes
    commitment: bytes
    secret_commitment: bytes
    created_at: float
    attempt: Attempt | None = None

    @property
    def locked(self) -> bool:
        return self.shares is None

    @property
    def guesses_remaining(self) -> int:
        return 0 if self.locked else max(0, self.max_guesses - self.guess_count)

    def lockout_due(self, now: float) -> bool:
        """Whether the guess limit is spent and the last attempt has failed or lapsed.

        The last allowed guess, if right, still recovers: the node waits for its Recover3
        (or ``LOCKOUT_GRACE_SECONDS``) before it erases the shares.
        """
        if self.locked or self.guess_count < self.max_guesses:
            return False
        attempt = self.attempt
        if attempt is None or attempt.used:
            return True
        return now - attempt.started_at >= LOCKOUT_GRACE_SECONDS

    def locked_out(self) -> VersionRecord:
        """This version with its shares erased and no live attempt."""
        return replace(self, shares=None, attempt=None)

    def info(self) -> VersionInfo:
        return VersionInfo(
            version=self.version,
            epoch=self.epoch,
            argon2=self.argon2,
            guesses_remaining=self.guesses_remaining,
            locked=self.locked,
            max_guesses=self.max_guesses,
        )


@dataclass(frozen=True, slots=True)
class UserRecord:
    """Everything a node holds for one ``(tenant, user_id)``."""

    committed: VersionRecord | None = None
    pending: VersionRecord | None = None
    tombstone_epoch: int = 0

    def version(self, version: bytes) -> VersionRecord | None:
        """The committed or pending record for ``version``, if this node holds it."""
        for record in (self.committed, self.pending):
            if record is not None and record.version == version:
                return record
        return None

    def with_version(self, record: VersionRecord) -> UserRecord:
        """Replace whichever slot holds ``record.version`` with ``record``."""
        if self.committed is not None and self.committed.version == record.version:
            return replace(self, committed=record)
        if self.pending is not None and self.pending.version == record.version:
            return replace(self, pending=record)
        raise KeyError("version not held")

    def status(self) -> UserStatus:
        return UserStatus(
            committed=self.committed.info() if self.committed else None,
            pending=self.pending.info() if self.pending else None,
            tombstone_epoch=self.tombstone_epoch,
        )

    @property
    def highest_epoch(self) -> int:
        return self.status().highest_epoch
