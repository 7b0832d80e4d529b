"""Unpadded base64url (RFC 4648 §5), the text form of keys, signatures and JWT segments.

Decoding is strict: the text must be exactly what :func:`encode` gives for the bytes it
decodes to. Python's decoder silently drops characters outside the alphabet and ignores
non-zero trailing bits, so two different texts could name the same key, and a client in
another language (which refuses them) would disagree with this one about what a manifest
or a token says.
"""

from __future__ import annotations

import base64
import binascii


def encode(data: bytes) -> str:
    """``data`` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of canonical unpadded base64url ``text``; ``ValueError`` for anything else
    (padding, whitespace, characters outside the alphabet, non-zero trailing bits)."""
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("not base64url") from None
    if encode(raw) != text:
        raise ValueError("not canonical unpadded base64url")
    return raw
