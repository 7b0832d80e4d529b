"""Argon2id KAT and parameter policy; TupleHash256/KMAC256 use; pakr v1 derivations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from Crypto.Hash import KMAC256, TupleHash256

from pakr.proto import kdf
from pakr.proto.errors import MalformedMessage, WeakParameters
from pakr.proto.kdf import DEFAULT_ARGON2, DEV_ARGON2, Argon2Params

ARGON2_VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "rfc9106-argon2id.json").read_text()
)["vectors"]

# NIST SP 800-185 example values (csrc.nist.gov KMAC_samples.pdf / TupleHash_samples.pdf),
# as also carried in pycryptodome's self-tests. TupleHash256 "Sample #4" is the first
# TupleHash256 sample (samples #1-#3 are TupleHash128).
TUPLEHASH256_SAMPLE_4 = {
    "fields": ["000102", "101112131415"],
    "custom": b"",
    "output": "cfb7058caca5e668f81a12a20a2195ce97a925f1dba3e7449a56f82201ec6073"
    "11ac2696b1ab5ea2352df1423bde7bd4bb78c9aed1a853c78672f9eb23bbe194",
}
TUPLEHASH256_SAMPLE_5 = {
    "fields": ["000102", "101112131415"],
    "custom": b"My Tuple App",
    "output": "147c2191d5ed7efd98dbd96d7ab5a11692576f5fe2a5065f3e33de6bba9f3aa1"
    "c4e9a068a289c61c95aab30aee1e410b0b607de3620e24a4e3bf9852a1d4367e",
}
KMAC256_SAMPLE_4 = {
    "key": "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
    "data": "00010203",
    "custom": b"My Tagged Application",
    "output": "20c570c31346f703c9ac36c61c03cb64c3970d0cfc787e9b79599d273a68d2f7"
    "f69d4cc3de9d104a351689f27cf6f5951f0103f33f4f24871024d9c27773a8dd",
}

K32 = bytes(range(32))
V16 = bytes(range(16))
N16 = bytes(range(100, 116))


# --- Argon2id ---------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", ARGON2_VECTORS, ids=lambda v: v["name"])
def test_argon2id_rfc9106(vector: dict[str, object]) -> None:
    params = Argon2Params(
        memory_kib=int(str(vector["memory_kib"])),
        iterations=int(str(vector["iterations"])),
        parallelism=int(str(vector["parallelism"])),
    )
    tag = kdf.argon2id(
        bytes.fromhex(str(vector["password"])),
        bytes.fromhex(str(vector["salt"])),
        params,
        int(str(vector["tag_length"])),
        secret=bytes.fromhex(str(vector["secret"])),
        ad=bytes.fromhex(str(vector["associated_data"])),
    )
    assert tag.hex() == vector["tag"]


def test_argon2id_without_secret_differs_and_is_deterministic() -> None:
    params = Argon2Params(memory_kib=64, iterations=1, parallelism=1)
    a = kdf.argon2id(b"pw", b"saltsalt", params, 32)
    assert a == kdf.argon2id(b"pw", b"saltsalt", params, 32)
    assert a != kdf.argon2id(b"pw", b"saltsalT", params, 32)
    assert len(kdf.argon2id(b"pw", b"saltsalt", params)) == 64


def test_argon2id_rejects_insane_values() -> None:
    with pytest.raises(ValueError):
        kdf.argon2id(b"pw", b"saltsalt", Argon2Params(16, 1, 4))
    with pytest.raises(ValueError):
        kdf.argon2id(b"pw", b"short", Argon2Params(64, 1, 1))


def test_floor_and_ceiling_values() -> None:
    assert Argon2Params(19456, 2, 1) == Argon2Params.FLOOR
    assert Argon2Params(1048576, 64, 16) == Argon2Params.CEILING
    assert DEV_ARGON2 == Argon2Params.FLOOR
    assert Argon2Params(65536, 3, 1) == DEFAULT_ARGON2


@pytest.mark.parametrize(
    "params",
    [Argon2Params.FLOOR, Argon2Params.CEILING, DEFAULT_ARGON2, Argon2Params(19456, 64, 16)],
)
def test_check_accepts_in_range(params: Argon2Params) -> None:
    params.check()


@pytest.mark.parametrize(
    ("params", "field", "value", "bound"),
    [
        (Argon2Params(19455, 2, 1), "memory_kib", "19455", "19456"),
        (Argon2Params(1048577, 2, 1), "memory_kib", "1048577", "1048576"),
        (Argon2Params(65536, 1, 1), "iterations", "1", "2"),
        (Argon2Params(65536, 65, 1), "iterations", "65", "64"),
        (Argon2Params(65536, 3, 0), "parallelism", "0", "1"),
        (Argon2Params(65536, 3, 17), "parallelism", "17", "16"),
    ],
)
def test_check_rejects_out_of_range(
    params: Argon2Params, field: str, value: str, bound: str
) -> None:
    with pytest.raises(WeakParameters) as info:
        params.check()
    message = str(info.value)
    assert field in message and value in message and bound in message


# --- SP 800-185 pins --------------------------------------------------------------------------


@pytest.mark.parametrize("sample", [TUPLEHASH256_SAMPLE_4, TUPLEHASH256_SAMPLE_5])
def test_tuplehash256_nist_sample(sample: dict[str, object]) -> None:
    raw_fields = sample["fields"]
    assert isinstance(raw_fields, list)
    fields = tuple(bytes.fromhex(f) for f in raw_fields)
    custom = sample["custom"]
    assert isinstance(custom, bytes)
    assert kdf._tuple_hash256(custom, fields, 64).hex() == sample["output"]


def test_kmac256_nist_sample_4() -> None:
    s = KMAC256_SAMPLE_4
    custom = s["custom"]
    assert isinstance(custom, bytes)
    out = kdf._kmac256(bytes.fromhex(str(s["key"])), bytes.fromhex(str(s["data"])), custom, 64)
    assert out.hex() == s["output"]


def test_tuple_hash_is_tuplehash256_32() -> None:
    h = TupleHash256.new(digest_bytes=32, custom=b"pakr/v1/x")
    h.update(b"a")
    h.update(b"bc")
    assert kdf.tuple_hash(b"pakr/v1/x", b"a", b"bc") == h.digest()


def test_mac_is_kmac256_of_length_prefixed_fields() -> None:
    m = KMAC256.new(key=K32, mac_len=32, custom=b"pakr/v1/x")
    m.update(b"\x00\x00\x00\x01a\x00\x00\x00\x02bc")
    assert kdf.mac(K32, b"pakr/v1/x", b"a", b"bc") == m.digest()


def test_field_boundaries_matter() -> None:
    label = b"pakr/v1/test"
    assert kdf.mac(K32, label, b"ab", b"c") != kdf.mac(K32, label, b"a", b"bc")
    assert kdf.mac(K32, label, b"abc") != kdf.mac(K32, label, b"abc", b"")
    assert kdf.mac(K32, label) != kdf.mac(K32, label, b"")
    assert kdf.tuple_hash(label, b"ab", b"c") != kdf.tuple_hash(label, b"a", b"bc")
    assert kdf.tuple_hash(label, b"abc") != kdf.tuple_hash(label, b"abc", b"")
    assert kdf.tuple_hash(label, b"x") != kdf.tuple_hash(b"pakr/v1/other", b"x")
    assert kdf.mac(K32, label, b"x") != kdf.mac(K32, b"pakr/v1/other", b"x")


def test_short_mac_key_rejected() -> None:
    with pytest.raises(ValueError):
        kdf.mac(bytes(31), b"pakr/v1/x")


def test_u64() -> None:
    assert kdf.u64(0) == bytes(8)
    assert kdf.u64(2**64 - 1) == b"\xff" * 8
    assert kdf.u64(258) == b"\x00" * 6 + b"\x01\x02"
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            kdf.u64(bad)


# --- derived values ---------------------------------------------------------------------------


def test_labels() -> None:
    labels = [
        kdf.LABEL_SALT,
        kdf.LABEL_OPRF_KEY,
        kdf.LABEL_UNLOCK_KEY,
        kdf.LABEL_COMMITMENT,
        kdf.LABEL_UNLOCK_TAG,
        kdf.LABEL_ENCRYPTION_KEY,
        kdf.LABEL_SECRET_AD,
        kdf.LABEL_SECRET_COMMITMENT,
        kdf.LABEL_UNLOCK_PROOF,
        kdf.LABEL_HPKE_REGISTER2,
        kdf.LABEL_HPKE_RECOVER3,
    ]
    assert len(set(labels)) == len(labels)
    assert all(label.startswith(b"pakr/v1/") for label in labels)


def test_derivations_match_their_definitions() -> None:
    out64 = bytes(range(64))
    tenant, user = "acme", "alice@example.com"
    assert kdf.registration_salt(tenant, user, V16) == kdf.tuple_hash(
        b"pakr/v1/salt", b"acme", b"alice@example.com", V16
    )
    assert kdf.secret_ad(tenant, user, V16) == kdf.tuple_hash(
        b"pakr/v1/secret-ad", b"acme", b"alice@example.com", V16
    )
    pub = bytes(range(32, 64))
    params = kdf.Argon2Params(memory_kib=19456, iterations=2, parallelism=1)
    assert kdf.oprf_key_statement(tenant, user, V16, 7, N16, 3, pub, 10, params) == kdf.tuple_hash(
        b"pakr/v1/oprf-key",
        b"acme",
        b"alice@example.com",
        V16,
        kdf.u64(7),
        N16,
        kdf.u64(3),
        pub,
        kdf.u64(10),
        kdf.u64(19456),
        kdf.u64(2),
        kdf.u64(1),
    )
    uk = kdf.unlock_key(out64)
    assert uk == kdf.mac(out64, b"pakr/v1/unlock-key")
    assert kdf.commitment(out64, K32) == kdf.mac(out64, b"pakr/v1/commitment", K32)
    tag = kdf.unlock_tag(uk, N16)
    assert tag == kdf.mac(uk, b"pakr/v1/unlock-tag", N16)
    assert kdf.encryption_key(K32, pub) == kdf.mac(K32, b"pakr/v1/encryption-key", pub)
    ct = bytes(145)
    assert kdf.secret_commitment(uk, N16, pub, ct) == kdf.mac(
        uk, b"pakr/v1/secret-commitment", N16, pub, ct
    )
    reply_key = bytes(range(256)) * 4 + bytes(192)  # 1216 bytes, as an X-Wing key
    assert kdf.unlock_proof(tag, V16, N16, reply_key) == kdf.mac(
        tag, b"pakr/v1/unlock-proof", V16, N16, reply_key
    )
    assert all(
        len(x) == 32
        for x in (uk, tag, kdf.registration_salt(tenant, user, V16), kdf.commitment(out64, K32))
    )


def test_utf8_encoding_of_strings() -> None:
    assert kdf.registration_salt("é", "ü", V16) == kdf.tuple_hash(
        b"pakr/v1/salt", "é".encode(), "ü".encode(), V16
    )


def test_wrong_field_lengths_are_malformed() -> None:
    with pytest.raises(MalformedMessage):
        kdf.registration_salt("t", "u", bytes(15))
    with pytest.raises(MalformedMessage):
        kdf.unlock_tag(K32, bytes(17))
    with pytest.raises(MalformedMessage):
        kdf.unlock_proof(K32, bytes(15), V16, bytes(1216))
    with pytest.raises(MalformedMessage):
        kdf.encryption_key(K32, bytes(31))
    with pytest.raises(MalformedMessage):
        kdf.unlock_key(bytes(32))


def test_stretch_password_splits_argon2_output() -> None:
    params = DEV_ARGON2
    access, seed = kdf.stretch_password(b"hunter2", "acme", "alice", V16, params)
    full = kdf.argon2id(b"hunter2", kdf.registration_salt("acme", "alice", V16), params, 64)
    assert access + seed == full
    assert len(access) == len(seed) == 32
    other, _ = kdf.stretch_password(b"hunter2", "acme", "bob", V16, params)
    assert other != access
