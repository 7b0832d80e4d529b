"""Sealing the user's static secret: fixed-size padding plus ChaCha20-Poly1305.

Every secret is padded to the same 129 bytes so ciphertext length reveals nothing about the
secret's length (a 32-byte key and a 24-word seed look alike on the nodes).
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import ConfigError, MalformedMessage

MAX_SECRET_LEN = 128
PADDED_LEN = 129
TAG_LEN = 16
CIPHERTEXT_LEN = 145
KEY_LEN = 32

_NONCE = bytes(12)


def pad(secret: bytes) -> bytes:
    """One length byte, the secret, zeros up to 129 bytes.

    ``ConfigError`` (an application mistake the SDK surfaces) if the secret exceeds 128 bytes.
    """
    if len(secret) > MAX_SECRET_LEN:
        raise ConfigError(
            f"the secret is {len(secret)} bytes; pakr stores at most {MAX_SECRET_LEN}"
        )
    return bytes([len(secret)]) + bytes(secret) + bytes(MAX_SECRET_LEN - len(secret))


def unpad(padded: bytes) -> bytes:
    """Inverse of :func:`pad`; ``MalformedMessage`` on a wrong length, a length byte > 128
    or non-zero padding (padding is canonical, so each secret has exactly one encoding)."""
    if len(padded) != PADDED_LEN:
        raise MalformedMessage(f"padded secret must be {PADDED_LEN} bytes")
    n = padded[0]
    if n > MAX_SECRET_LEN:
        raise MalformedMessage("padded secret has an invalid length byte")
    if not hmac.compare_digest(bytes(padded[1 + n :]), bytes(MAX_SECRET_LEN - n)):
        raise MalformedMessage("padded secret has non-zero padding")
    return bytes(padded[1 : 1 + n])


def _aead(encryption_key: bytes) -> ChaCha20Poly1305:
    if len(encryption_key) != KEY_LEN:
        raise ValueError(f"the encryption key must be {KEY_LEN} bytes")
    return ChaCha20Poly1305(bytes(encryption_key))


def encrypt_secret(encryption_key: bytes, secret: bytes, ad: bytes) -> bytes:
    """ChaCha20-Poly1305 of ``pad(secret)`` under ``encryption_key`` with a zero nonce.

    The all-zero nonce is safe because every key encrypts exactly one plaintext: the key is
    ``MAC(seed, …; s)`` with a fresh random scalar ``s`` (and a salt bound to a fresh
    ``version``) for every registration, and a retry resends the same ciphertext bytes instead
    of encrypting again (docs/protocol.md §1). A random nonce would add 12 bytes and nothing else.
    """
    return _aead(encryption_key).encrypt(_NONCE, pad(secret), ad)


def decrypt_secret(encryption_key: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    """Decrypt and unpad; ``MalformedMessage`` on a wrong length or failed authentication
    (wrong key, wrong user/version, or a tampered ciphertext — indistinguishable on purpose)."""
    if len(ciphertext) != CIPHERTEXT_LEN:
        raise MalformedMessage(f"secret ciphertext must be {CIPHERTEXT_LEN} bytes")
    try:
        padded = _aead(encryption_key).decrypt(_NONCE, bytes(ciphertext), ad)
    except InvalidTag:
        raise MalformedMessage("secret ciphertext failed authentication") from None
    return unpad(padded)
