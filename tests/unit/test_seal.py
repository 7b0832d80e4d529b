"""Secret padding and ChaCha20-Poly1305 sealing."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pakr.proto import seal
from pakr.proto.errors import ConfigError, MalformedMessage

KEY = bytes(range(32))
AD = b"ad"


def test_sizes() -> None:
    assert seal.MAX_SECRET_LEN == 128
    assert seal.PADDED_LEN == 129
    assert seal.CIPHERTEXT_LEN == 145


@pytest.mark.parametrize("n", [0, 1, 127, 128])
def test_pad_unpad(n: int) -> None:
    secret = os.urandom(n)
    padded = seal.pad(secret)
    assert len(padded) == 129
    assert padded[0] == n
    assert padded[1 + n :] == bytes(128 - n)
    assert seal.unpad(padded) == secret


def test_pad_rejects_129() -> None:
    with pytest.raises(ConfigError):
        seal.pad(bytes(129))


def test_unpad_rejects_bad_encodings() -> None:
    with pytest.raises(MalformedMessage):
        seal.unpad(bytes(128))
    with pytest.raises(MalformedMessage):
        seal.unpad(bytes([129]) + bytes(128))
    with pytest.raises(MalformedMessage):
        seal.unpad(bytes([1, 7]) + bytes(126) + b"\x01")


@pytest.mark.parametrize("n", [0, 1, 32, 128])
def test_encrypt_decrypt(n: int) -> None:
    secret = os.urandom(n)
    ct = seal.encrypt_secret(KEY, secret, AD)
    assert len(ct) == seal.CIPHERTEXT_LEN  # length hides the secret's length
    assert seal.decrypt_secret(KEY, ct, AD) == secret


def test_decrypt_failures() -> None:
    ct = seal.encrypt_secret(KEY, b"secret", AD)
    for key, data, ad in [
        (bytes(32), ct, AD),
        (KEY, ct, b"other ad"),
        (KEY, ct[:-1] + bytes([ct[-1] ^ 1]), AD),
        (KEY, bytes([ct[0] ^ 1]) + ct[1:], AD),
    ]:
        with pytest.raises(MalformedMessage, match="secret ciphertext failed authentication"):
            seal.decrypt_secret(key, data, ad)
    with pytest.raises(MalformedMessage):
        seal.decrypt_secret(KEY, ct[:-1], AD)


def test_error_messages_carry_no_secret() -> None:
    secret = b"TOPSECRETVALUE" * 10
    with pytest.raises(ConfigError) as info:
        seal.pad(secret)
    assert b"TOPSECRET".decode() not in str(info.value)


def test_wrong_key_length_is_programming_error() -> None:
    with pytest.raises(ValueError):
        seal.encrypt_secret(bytes(16), b"x", AD)


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=160))
def test_decoders_raise_only_malformed(data: bytes) -> None:
    for decode in (seal.unpad, lambda d: seal.decrypt_secret(KEY, d, AD)):
        with contextlib.suppress(MalformedMessage):
            decode(data)


@settings(max_examples=200)
@given(st.binary(min_size=129, max_size=129))
def test_unpad_fuzz_exact_length(data: bytes) -> None:
    try:
        secret = seal.unpad(data)
    except MalformedMessage:
        return
    assert seal.pad(secret) == data
