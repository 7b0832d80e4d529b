"""Sealing the secret-bearing fields at rest with the node's data key (PROTOCOL.md §6).

``k_i``, ``s_i`` and ``unlock_tag_i`` are stored as ``nonce (12) ‖ ChaCha20-Poly1305(data
key, nonce, value, AD)`` with a random nonce and ``AD = H("pakr/v1/node-seal"; tenant,
user_id, version) ‖ field name``: the 32-byte TupleHash prefix is fixed-length, so appending
the field name keeps the encoding injective while one hash serves all three fields of a row
(a TupleHash costs ~18 µs in pycryptodome, on the Recover2 hot path). The AD binds each
sealed value to its row and column, so a database attacker cannot swap one user's share
into another user's row or one field into another; a copied database file without the
data key reveals nothing.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from pakr.node.store.base import StoreError
from pakr.proto import kdf
from pakr.proto.messages import UserRef

LABEL_NODE_SEAL = b"pakr/v1/node-seal"
KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16

FIELD_OPRF_KEY_SHARE = "oprf_key_share"
FIELD_SECRET_SHARE = "secret_share"  # noqa: S105 - a column name
FIELD_UNLOCK_TAG = "unlock_tag"

# The data-key check stored in every database's meta table: one fixed plaintext sealed under
# the data key, so a node (or a restore) with the wrong key file fails at start, not at the
# first unseal. Same value for every backend, so a backup's check verifies against either.
KEY_CHECK_PLAINTEXT = b"pakr node data key check"
KEY_CHECK_USER = UserRef(tenant="-", user_id="-")
KEY_CHECK_FIELD = "key_check"


def row_ad(user: UserRef, version: bytes) -> bytes:
    """The per-row part of the associated data: ``H("pakr/v1/node-seal"; tenant, user_id,
    version)`` (32 bytes)."""
    return kdf.tuple_hash(
        LABEL_NODE_SEAL, user.tenant.encode("utf-8"), user.user_id.encode("utf-8"), version
    )


def seal_ad(user: UserRef, version: bytes, field: str, row: bytes | None = None) -> bytes:
    """The associated data binding a sealed value to its user, version and field."""
    return (row if row is not None else row_ad(user, version)) + field.encode("ascii")


class Sealer:
    """Seals and unseals with one data key; the key never appears in reprs or errors."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != KEY_LEN:
            raise ValueError("the node data key must be 32 bytes")
        self._aead = ChaCha20Poly1305(data_key)

    def __repr__(self) -> str:
        return "Sealer(<data key>)"

    def seal(
        self, user: UserRef, version: bytes, field: str, value: bytes, *, row: bytes | None = None
    ) -> bytes:
        """Seal ``value``; ``row`` is :func:`row_ad` when the caller seals several fields."""
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, value, seal_ad(user, version, field, row))

    def unseal(
        self, user: UserRef, version: bytes, field: str, sealed: bytes, *, row: bytes | None = None
    ) -> bytes:
        """The plaintext; ``StoreError`` if the value was tampered with, moved, or sealed
        under another data key (a wrong key file is the usual cause)."""
        if len(sealed) < NONCE_LEN + TAG_LEN:
            raise StoreError(f"sealed {field} is truncated in the database")
        try:
            return self._aead.decrypt(
                sealed[:NONCE_LEN], sealed[NONCE_LEN:], seal_ad(user, version, field, row)
            )
        except InvalidTag:
            raise StoreError(
                f"cannot unseal {field}: wrong data key for this database, or the row was"
                " tampered with"
            ) from None

    def seal_key_check(self) -> bytes:
        """A fresh data-key check value for a new database's meta table."""
        return self.seal(KEY_CHECK_USER, b"", KEY_CHECK_FIELD, KEY_CHECK_PLAINTEXT)

    def check_key(self, sealed: bytes) -> None:
        """``StoreError`` unless ``sealed`` is a data-key check sealed under this key."""
        self.unseal(KEY_CHECK_USER, b"", KEY_CHECK_FIELD, sealed)
