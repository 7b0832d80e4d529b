"""Password and argument normalisation, and the Argon2id call kept off the event loop.

Passwords given as ``str`` are normalised to Unicode NFKC and encoded as UTF-8, so the same
password typed on different keyboards or input methods (composed vs. decomposed accents,
full-width digits, ligatures) stretches to the same key. Passwords given as ``bytes`` are used
exactly as given: an application that has its own normalisation passes bytes.
"""

from __future__ import annotations

import asyncio
import unicodedata

from pakr.proto import kdf
from pakr.proto.errors import ConfigError
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import MAX_USER_ID_BYTES, UserRef

MAX_PASSWORD_BYTES = 4096

Password = str | bytes
"""A password: ``str`` (NFKC-normalised, UTF-8) or ``bytes`` (used as is)."""


def password_bytes(password: Password) -> bytes:
    """The bytes Argon2id hashes: NFKC + UTF-8 for ``str``, unchanged for ``bytes``."""
    if isinstance(password, str):
        data = unicodedata.normalize("NFKC", password).encode("utf-8")
    elif isinstance(password, bytes | bytearray | memoryview):
        data = bytes(password)
    else:
        raise ConfigError("a password must be str or bytes")
    if not data:
        raise ConfigError("the password must not be empty")
    if len(data) > MAX_PASSWORD_BYTES:
        raise ConfigError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return data


def check_user(tenant: str, user_id: str) -> UserRef:
    """Validate a user id (1..128 UTF-8 bytes) before any traffic."""
    if not isinstance(user_id, str):
        raise ConfigError("user_id must be a str")
    size = len(user_id.encode("utf-8"))
    if not 1 <= size <= MAX_USER_ID_BYTES:
        raise ConfigError(f"user_id must be 1..{MAX_USER_ID_BYTES} UTF-8 bytes, got {size}")
    return UserRef(tenant=tenant, user_id=user_id)


def check_secret(secret: bytes) -> bytes:
    """Secrets are bytes of length 0..128."""
    if not isinstance(secret, bytes | bytearray | memoryview):
        raise ConfigError("the secret must be bytes")
    return bytes(secret)


async def stretch(
    password: bytes, user: UserRef, version: bytes, params: Argon2Params
) -> tuple[bytes, bytes]:
    """Argon2id(password) in a worker thread: ``(access_key, encryption_key_seed)``.

    Argon2id takes tens to hundreds of milliseconds and releases the GIL, so the event loop
    keeps serving other calls (and other users' operations) meanwhile.
    """
    return await asyncio.to_thread(
        kdf.stretch_password, password, user.tenant, user.user_id, version, params
    )
