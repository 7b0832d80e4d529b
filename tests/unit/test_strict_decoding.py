"""Strict decoding of keys and manifests (gaps found while writing docs/protocol.md §10).

A key text, HPKE public key or manifest number that another implementation would read
differently, or that would fail only later (after a node committed a release), is refused
where it is decoded.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pakr.proto import base64url
from pakr.proto.errors import MalformedMessage
from pakr.proto.hpke import MLKEM_PUBLIC_LEN, SEED_LEN, HpkePrivateKey, HpkePublicKey

# Small-order X25519 points (RFC 7748 §6.1 and the usual twist list): every one must be refused.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


@given(st.binary(max_size=64))
def test_base64url_round_trips_and_only_canonical_text_decodes(data: bytes) -> None:
    text = base64url.encode(data)
    assert base64url.decode(text) == data
    for bad in (text + "=", " " + text, text + "\n", text + "!", text.replace("A", "+")):
        if bad != text:
            with pytest.raises(ValueError):
                base64url.decode(bad)


def test_base64url_refuses_non_zero_trailing_bits() -> None:
    assert base64url.decode("AA") == b"\x00"
    with pytest.raises(ValueError):
        base64url.decode("AB")  # same byte under a lenient decoder


@pytest.mark.parametrize("point", LOW_ORDER, ids=range(len(LOW_ORDER)))
def test_hpke_public_key_with_a_low_order_x25519_half_is_refused(point: bytes) -> None:
    good = HpkePrivateKey.from_seed(os.urandom(SEED_LEN)).public.encoded
    with pytest.raises(MalformedMessage):
        HpkePublicKey.decode(good[:MLKEM_PUBLIC_LEN] + point)
    assert HpkePublicKey.decode(good).encoded == good


def test_hpke_public_key_text_must_be_canonical() -> None:
    key = HpkePrivateKey.from_seed(os.urandom(SEED_LEN)).public
    assert HpkePublicKey.from_text(key.text + "\n").encoded == key.encoded  # files end in \n
    with pytest.raises(MalformedMessage):
        HpkePublicKey.from_text(key.text[:10] + "*" + key.text[10:])
