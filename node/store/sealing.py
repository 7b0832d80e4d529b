"""Sealing the secret-bearing fields at rest (docs/protocol.md §6), under per-version keys.

``k_i``, ``s_i`` and ``unlock_tag_i`` are stored as ``nonce (12) ‖ ChaCha20-Poly1305(version
key, nonce, value, AD)`` with a random nonce and ``AD = H("pakr/v1/node-seal"; tenant,
user_id, version) ‖ field name``: the 32-byte TupleHash prefix is fixed-length, so appending
the field name keeps the encoding injective while one hash serves all three fields of a row.
The AD binds each sealed value to its row and column, so a database attacker cannot swap one
user's share into another user's row or one field into another.

The version key is random per written version and stored wrapped under a key generation
(:mod:`pakr.node.store.keys`): ``nonce ‖ ChaCha20-Poly1305(generation key, nonce, version
key, row AD ‖ "version_key" ‖ u64 generation)``. Erasing a version drops its wrapped key;
destroying the generations that ever wrapped it makes every surviving copy of its sealed
values unreadable. Re-wrapping touches the 60-byte wrapped key, never the sealed fields.

The data key seals the generation files and a key-check value in every database, so a node
(or a restore) with the wrong key fails at start, not at the first unseal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from pakr.node.store.base import StoreError
from pakr.node.store.keys import KEY_LEN, NONCE_LEN, KeyRing
from pakr.proto import kdf
from pakr.proto.messages import UserRef

LABEL_NODE_SEAL = b"pakr/v1/node-seal"
TAG_LEN = 16

FIELD_OPRF_KEY_SHARE = "oprf_key_share"
FIELD_SECRET_SHARE = "secret_share"  # noqa: S105 - a column name
FIELD_UNLOCK_TAG = "unlock_tag"
FIELD_VERSION_KEY = "version_key"

KEY_CHECK_PLAINTEXT = b"pakr node data key check"
KEY_CHECK_USER = UserRef(tenant="-", user_id="-")
KEY_CHECK_FIELD = "key_check"


def row_ad(user: UserRef, version: bytes) -> bytes:
    """The per-row part of the associated data: ``H("pakr/v1/node-seal"; tenant, user_id,
    version)`` (32 bytes)."""
    return kdf.tuple_hash(
        LABEL_NODE_SEAL, user.tenant.encode("utf-8"), user.user_id.encode("utf-8"), version
    )


def wrap_ad(row: bytes, generation: int) -> bytes:
    """The associated data of a wrapped version key: its row and its generation."""
    return row + FIELD_VERSION_KEY.encode("ascii") + generation.to_bytes(8, "big")


def seal_ad(user: UserRef, version: bytes, field: str, row: bytes | None = None) -> bytes:
    """The associated data binding a sealed value to its user, version and field."""
    return (row if row is not None else row_ad(user, version)) + field.encode("ascii")


def _open(aead: ChaCha20Poly1305, sealed: bytes, ad: bytes, what: str) -> bytes:
    if len(sealed) < NONCE_LEN + TAG_LEN:
        raise StoreError(f"sealed {what} is truncated in the database")
    try:
        return aead.decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], ad)
    except InvalidTag:
        raise StoreError(
            f"cannot unseal {what}: wrong key for this database, or the row was tampered with"
        ) from None


def _seal(aead: ChaCha20Poly1305, value: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE_LEN)
    return nonce + aead.encrypt(nonce, value, ad)


@dataclass(frozen=True, slots=True)
class VersionKey:
    """One version's key, with the row AD it seals under (never in reprs)."""

    user: UserRef
    version: bytes
    row: bytes = field(repr=False)
    aead: ChaCha20Poly1305 = field(repr=False)
    generation: int | None  # None: a row written before key generations (data key)
    wrapped: bytes | None = field(repr=False)

    def seal(self, field_name: str, value: bytes) -> bytes:
        return _seal(self.aead, value, self.row + field_name.encode("ascii"))

    def unseal(self, field_name: str, sealed: bytes) -> bytes:
        return _open(self.aead, sealed, self.row + field_name.encode("ascii"), field_name)


class Sealer:
    """Seals under per-version keys wrapped by the :class:`KeyRing`'s generations.

    ``keys`` is the node's key directory (``Path``), a ready :class:`KeyRing`, or ``None``
    for generations held in memory only (tests and tools that never reopen a database).
    """

    __slots__ = ("_data", "keys")

    def __init__(self, data_key: bytes, keys: KeyRing | Path | None = None) -> None:
        if len(data_key) != KEY_LEN:
            raise ValueError("the node data key must be 32 bytes")
        self._data = ChaCha20Poly1305(data_key)
        self.keys = keys if isinstance(keys, KeyRing) else KeyRing(data_key, keys)

    def __repr__(self) -> str:
        return f"Sealer(<data key>, {self.keys!r})"

    def new_version_key(self, user: UserRef, version: bytes, now: float) -> VersionKey:
        """A fresh version key, wrapped under the current generation."""
        generation, gen_key = self.keys.current(now)
        key = os.urandom(KEY_LEN)
        row = row_ad(user, version)
        wrapped = _seal(ChaCha20Poly1305(gen_key), key, wrap_ad(row, generation))
        return VersionKey(user, version, row, ChaCha20Poly1305(key), generation, wrapped)

    def open_version_key(
        self, user: UserRef, version: bytes, generation: int | None, wrapped: bytes | None
    ) -> VersionKey:
        """The version key of a stored row; ``StoreError`` when its generation is gone."""
        row = row_ad(user, version)
        if generation is None or wrapped is None:
            return VersionKey(user, version, row, self._data, None, None)
        gen_key = self.keys.key(generation)
        key = _open(ChaCha20Poly1305(gen_key), wrapped, wrap_ad(row, generation), FIELD_VERSION_KEY)
        return VersionKey(user, version, row, ChaCha20Poly1305(key), generation, wrapped)

    def rewrap(
        self, user: UserRef, version: bytes, generation: int, wrapped: bytes, now: float
    ) -> tuple[int, bytes]:
        """The same version key wrapped under the current generation."""
        row = row_ad(user, version)
        key = _open(
            ChaCha20Poly1305(self.keys.key(generation)),
            wrapped,
            wrap_ad(row, generation),
            FIELD_VERSION_KEY,
        )
        target, target_key = self.keys.current(now)
        return target, _seal(ChaCha20Poly1305(target_key), key, wrap_ad(row, target))

    def seal_key_check(self) -> bytes:
        """A fresh data-key check value for a new database's meta table."""
        return _seal(self._data, KEY_CHECK_PLAINTEXT, seal_ad(KEY_CHECK_USER, b"", KEY_CHECK_FIELD))

    def check_key(self, sealed: bytes) -> None:
        """``StoreError`` unless ``sealed`` is a data-key check sealed under this key."""
        _open(self._data, sealed, seal_ad(KEY_CHECK_USER, b"", KEY_CHECK_FIELD), "data key check")
