"""The ``versions`` row shared by every backend: sealing and decoding.

SQLite and PostgreSQL store a version in the same columns (:mod:`pakr.node.store.schema`),
with the same value encodings (u64 as 8 big-endian bytes so the full range fits either
database; the secret-bearing fields sealed under the version's key). Keeping the mapping
here, once, is what lets ``pakr node backup``/``restore`` move rows between backends verbatim.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from pakr.node.store.base import AuditRecord, StoreError
from pakr.node.store.schema import AUDIT_COLUMNS, USER_COLUMNS, VERSION_COLUMNS
from pakr.node.store.sealing import (
    FIELD_OPRF_KEY_SHARE,
    FIELD_SECRET_SHARE,
    FIELD_UNLOCK_TAG,
    Sealer,
)
from pakr.proto.errors import MalformedMessage
from pakr.proto.group import Element, Scalar
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import UserRef, UserStatus, VersionInfo
from pakr.proto.records import Attempt, ShareMaterial, VersionRecord

__all__ = ["AUDIT_COLUMNS", "USER_COLUMNS", "VERSION_COLUMNS", "version_record", "version_row"]


def u64(value: int) -> bytes:
    """A u64 column value: 8 big-endian bytes (SQLite integers are signed 64-bit)."""
    return value.to_bytes(8, "big")


def from_u64(blob: bytes) -> int:
    """Read a u64 column value."""
    return int.from_bytes(bytes(blob), "big")


def version_row(
    sealer: Sealer,
    user: UserRef,
    slot: str,
    rec: VersionRecord,
    *,
    locked_at: float | None = None,
    now: float | None = None,
) -> tuple[Any, ...]:
    """The ``versions`` row for ``rec`` in :data:`VERSION_COLUMNS` order, shares sealed
    under a fresh version key wrapped by the generation current at ``now``."""
    shares = rec.shares
    attempt = rec.attempt
    key = None
    if shares is not None:
        key = sealer.new_version_key(user, rec.version, time.time() if now is None else now)

    def seal(field: str, value: bytes) -> bytes:
        assert key is not None
        return key.seal(field, value)

    return (
        user.tenant,
        user.user_id,
        rec.version,
        slot,
        u64(rec.epoch),
        rec.argon2.memory_kib,
        rec.argon2.iterations,
        rec.argon2.parallelism,
        rec.max_guesses,
        rec.guess_count,
        None if shares is None else seal(FIELD_OPRF_KEY_SHARE, shares.oprf_key_share.encoded),
        None if shares is None else seal(FIELD_SECRET_SHARE, shares.secret_share.encoded),
        None if shares is None else seal(FIELD_UNLOCK_TAG, shares.unlock_tag),
        None if shares is None else shares.encrypted_secret,
        rec.oprf_public_share.encoded,
        rec.oprf_key_signature,
        rec.verifying_key,
        rec.commitment,
        rec.secret_commitment,
        rec.created_at,
        None if attempt is None else attempt.attempt_id,
        None if attempt is None else attempt.blinded_element,
        None if attempt is None else attempt.nonce,
        None if attempt is None else attempt.started_at,
        0 if attempt is None else int(attempt.used),
        locked_at,
        None if key is None else key.generation,
        None if key is None else key.wrapped,
    )


def version_record(sealer: Sealer, user: UserRef, row: Mapping[str, Any]) -> VersionRecord:
    """Decode and unseal a ``versions`` row; ``StoreError`` when it is corrupt."""
    version = bytes(row["version"])
    try:
        shares: ShareMaterial | None = None
        if row["sealed_oprf_key_share"] is not None:
            wrapped = row["wrapped_key"]
            key = sealer.open_version_key(
                user, version, row["key_generation"], None if wrapped is None else bytes(wrapped)
            )

            def unseal(field: str, column: str) -> bytes:
                return key.unseal(field, bytes(row[column]))

            shares = ShareMaterial(
                oprf_key_share=Scalar.decode(unseal(FIELD_OPRF_KEY_SHARE, "sealed_oprf_key_share")),
                secret_share=Scalar.decode(unseal(FIELD_SECRET_SHARE, "sealed_secret_share")),
                unlock_tag=unseal(FIELD_UNLOCK_TAG, "sealed_unlock_tag"),
                encrypted_secret=bytes(row["encrypted_secret"]),
            )
        attempt = None
        if row["attempt_id"] is not None:
            attempt = Attempt(
                attempt_id=bytes(row["attempt_id"]),
                blinded_element=bytes(row["attempt_element"]),
                nonce=bytes(row["attempt_nonce"]),
                started_at=float(row["attempt_started_at"]),
                used=bool(row["attempt_used"]),
            )
        return VersionRecord(
            version=version,
            epoch=from_u64(row["epoch"]),
            argon2=Argon2Params(
                memory_kib=row["argon2_memory_kib"],
                iterations=row["argon2_iterations"],
                parallelism=row["argon2_parallelism"],
            ),
            max_guesses=row["max_guesses"],
            guess_count=row["guess_count"],
            shares=shares,
            oprf_public_share=Element.decode(bytes(row["oprf_public_share"])),
            oprf_key_signature=bytes(row["oprf_key_signature"]),
            verifying_key=bytes(row["verifying_key"]),
            commitment=bytes(row["commitment"]),
            secret_commitment=bytes(row["secret_commitment"]),
            created_at=float(row["created_at"]),
            attempt=attempt,
        )
    except MalformedMessage as exc:
        raise StoreError(f"a stored version row is corrupt: {exc}") from None


# The metadata columns of a version (no share, no key): what ``list_versions`` reads.
VERSION_METADATA_SQL = (
    "SELECT user_id, slot, version, epoch, argon2_memory_kib, argon2_iterations,"
    " argon2_parallelism, max_guesses, guess_count,"
    " sealed_oprf_key_share IS NULL AS locked FROM versions"
)


def user_statuses(
    users: Sequence[Mapping[str, Any]], versions: Sequence[Mapping[str, Any]]
) -> list[tuple[str, UserStatus]]:
    """``users`` rows and their ``VERSION_METADATA_SQL`` rows as ``(user_id, status)``."""
    slots: dict[str, dict[str, VersionInfo]] = {}
    for row in versions:
        locked = bool(row["locked"])
        max_guesses = int(row["max_guesses"])
        slots.setdefault(row["user_id"], {})[row["slot"]] = VersionInfo(
            version=bytes(row["version"]),
            epoch=from_u64(row["epoch"]),
            argon2=Argon2Params(
                memory_kib=row["argon2_memory_kib"],
                iterations=row["argon2_iterations"],
                parallelism=row["argon2_parallelism"],
            ),
            guesses_remaining=0 if locked else max(0, max_guesses - int(row["guess_count"])),
            locked=locked,
            max_guesses=max_guesses,
        )
    out = []
    for row in users:
        held = slots.get(row["user_id"], {})
        status = UserStatus(
            committed=held.get("committed"),
            pending=held.get("pending"),
            tombstone_epoch=from_u64(row["tombstone_epoch"]),
        )
        out.append((str(row["user_id"]), status))
    return out


def audit_record(row: Mapping[str, Any]) -> AuditRecord:
    """An ``audit`` row (columns :data:`AUDIT_COLUMNS`) as an :class:`AuditRecord`."""
    return AuditRecord(
        id=row["id"],
        time=row["time"],
        tenant=row["tenant"],
        user_id=row["user_id"],
        op=row["op"],
        outcome=row["outcome"],
        peer=row["peer"],
    )
