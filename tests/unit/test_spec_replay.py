"""docs/protocol.md is enough to interoperate: its formulas reproduce tests/vectors/pakr-v2.json.

Every derivation below is transcribed from the specification (§1's table, §3, §4 and §9),
written against the primitives' libraries directly and importing nothing from ``pakr``: the
labels, field orders, encodings, the Lagrange combination, Finalize, the X-Wing key
derivation, the HPKE ``info`` strings and the order of the vectors' random draws. If the spec
and the code drift apart (a field added to a statement, a label renamed, a draw reordered),
this test fails where ``tests/unit/test_vectors.py``, which calls the code's own functions,
would not.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import rbcl
from Crypto.Hash import KMAC256, SHAKE256, TupleHash256
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

ROOT = Path(__file__).resolve().parents[2]
CASES = json.loads((ROOT / "tests" / "vectors" / "pakr-v2.json").read_text(encoding="utf-8"))[
    "cases"
]
L = 2**252 + 27742317777372353535851937790883648493


def h(label: str, *fields: bytes) -> bytes:
    """§1: H(label; f…) = TupleHash256, 32 bytes, S = label."""
    digest = TupleHash256.new(digest_bytes=32, custom=label.encode())
    for field in fields:
        digest.update(field)
    out: bytes = digest.digest()
    return out


def mac(key: bytes, label: str, *fields: bytes) -> bytes:
    """§1: MAC(key, label; f…) = KMAC256 over 4-byte big-endian length-prefixed fields."""
    m = KMAC256.new(key=key, mac_len=32, custom=label.encode())
    m.update(b"".join(len(f).to_bytes(4, "big") + f for f in fields))
    out: bytes = m.digest()
    return out


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def scalar(n: int) -> bytes:
    return (n % L).to_bytes(32, "little")


def lagrange(indices: list[int]) -> dict[int, int]:
    """§1 Shamir: λ_i = Π_{j≠i} x_j / (x_j - x_i) mod L (public indices: plain integers)."""
    out = {}
    for i in indices:
        num = den = 1
        for j in indices:
            if j != i:
                num, den = num * j % L, den * (j - i) % L
        out[i] = num * pow(den, -1, L) % L
    return out


def xwing(seed: bytes) -> tuple[bytes, hpke.MLKEM768X25519PrivateKey]:
    """§1 HPKE: SHAKE256(seed, 96) → ML-KEM-768 seed (64) and X25519 key (32)."""
    expanded = SHAKE256.new(seed).read(96)
    ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    xk = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw()
    return public, hpke.MLKEM768X25519PrivateKey(ml, xk)


SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_registration_values_follow_the_spec(case: dict[str, Any]) -> None:
    inputs, reg = case["inputs"], case["registration"]
    tenant, user = inputs["tenant"].encode(), inputs["user_id"].encode()
    version, epoch, params = bytes.fromhex(reg["version"]), inputs["epoch"], inputs["argon2"]
    salt = h("pakr/v1/salt", tenant, user, version)
    assert salt.hex() == reg["salt"]
    password = unicodedata.normalize("NFKC", inputs["password"]).encode()
    stretched = Argon2id(
        salt=salt,
        length=64,
        iterations=params["iterations"],
        lanes=params["parallelism"],
        memory_cost=params["memory_kib"],
    ).derive(password)
    assert stretched.hex() == reg["access_key"] + reg["encryption_key_seed"]
    access_key, seed = stretched[:32], stretched[32:]
    output = bytes.fromhex(reg["oprf_output"])
    unlock_key = mac(output, "pakr/v1/unlock-key")
    assert unlock_key.hex() == reg["unlock_key"]
    assert mac(output, "pakr/v1/commitment", access_key).hex() == reg["commitment"]
    key = mac(seed, "pakr/v1/encryption-key", bytes.fromhex(reg["secret_scalar"]))
    assert key.hex() == reg["encryption_key"]
    ad = h("pakr/v1/secret-ad", tenant, user, version)
    assert ad.hex() == reg["secret_ad"]
    secret = bytes.fromhex(inputs["secret"])
    padded = bytes([len(secret)]) + secret + bytes(128 - len(secret))
    ciphertext = ChaCha20Poly1305(key).encrypt(bytes(12), padded, ad)
    assert ciphertext.hex() == reg["encrypted_secret"]

    ids = {n["index"]: bytes.fromhex(n["id"]) for n in inputs["nodes"]}
    for node in reg["nodes"]:
        index, node_id = node["index"], ids[node["index"]]
        public_share = bytes.fromhex(node["oprf_public_share"])
        k_i, s_i = bytes.fromhex(node["oprf_key_share"]), bytes.fromhex(node["secret_share"])
        assert rbcl.crypto_scalarmult_ristretto255_base(k_i) == public_share
        statement = h(
            "pakr/v1/oprf-key",
            tenant,
            user,
            version,
            u64(epoch),
            node_id,
            u64(index),
            public_share,
            u64(inputs["max_guesses"]),
            u64(params["memory_kib"]),
            u64(params["iterations"]),
            u64(params["parallelism"]),
        )
        assert statement.hex() == node["oprf_key_statement"]
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(reg["verifying_key"])).verify(
            bytes.fromhex(node["oprf_key_signature"]), statement
        )
        tag = mac(unlock_key, "pakr/v1/unlock-tag", node_id)
        assert tag.hex() == node["unlock_tag"]
        commitment = mac(unlock_key, "pakr/v1/secret-commitment", node_id, s_i, ciphertext)
        assert commitment.hex() == node["secret_commitment"]
        info = h("pakr/v1/hpke-register2", tenant, user, node_id, version, u64(epoch))
        assert info.hex() == node["register2_info"]
        public, private = xwing(bytes.fromhex(node["hpke_seed"]))
        assert public.hex() == node["hpke_public_key"]
        opened = SUITE.decrypt(bytes.fromhex(node["sealed_shares"]), private, info=info)
        assert opened == k_i + s_i + tag + ciphertext


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_recovery_values_follow_the_spec(case: dict[str, Any]) -> None:
    inputs, reg, rec = case["inputs"], case["registration"], case["recovery"]
    tenant, user = inputs["tenant"].encode(), inputs["user_id"].encode()
    version, attempt_id = bytes.fromhex(reg["version"]), bytes.fromhex(rec["attempt_id"])
    ids = {n["index"]: bytes.fromhex(n["id"]) for n in inputs["nodes"]}
    # Z = Σ λ_i·Z_i, then Finalize = SHA-512(len ‖ input ‖ len ‖ r⁻¹·Z ‖ "Finalize")
    weights = lagrange([n["index"] for n in rec["nodes"]])
    combined = None
    for node in rec["nodes"]:
        term = rbcl.crypto_scalarmult_ristretto255(
            scalar(weights[node["index"]]), bytes.fromhex(node["evaluated_element"])
        )
        combined = term if combined is None else rbcl.crypto_core_ristretto255_add(combined, term)
    assert combined is not None
    unblind = pow(int.from_bytes(bytes.fromhex(rec["blind"]), "little"), -1, L)
    element = rbcl.crypto_scalarmult_ristretto255(scalar(unblind), combined)
    access_key = bytes.fromhex(reg["access_key"])
    output = hashlib.sha512(
        (32).to_bytes(2, "big") + access_key + (32).to_bytes(2, "big") + element + b"Finalize"
    ).digest()
    assert output.hex() == reg["oprf_output"]
    reply_key, reply_private = xwing(bytes.fromhex(rec["reply_key_seed"]))
    assert reply_key.hex() == rec["reply_key"]
    unlock_key = bytes.fromhex(reg["unlock_key"])
    for node in rec["nodes"]:
        node_id = ids[node["index"]]
        tag = mac(unlock_key, "pakr/v1/unlock-tag", node_id)
        nonce = bytes.fromhex(node["nonce"])
        proof = mac(tag, "pakr/v1/unlock-proof", nonce, attempt_id, reply_key)
        assert proof.hex() == node["unlock_proof"]
        reset = mac(tag, "pakr/v1/reset-proof", version, bytes.fromhex(node["reset_nonce"]))
        assert reset.hex() == node["reset_proof"]
        info = h("pakr/v1/hpke-recover3", tenant, user, node_id, version, attempt_id)
        assert info.hex() == node["recover3_info"]
        opened = SUITE.decrypt(bytes.fromhex(node["sealed_share"]), reply_private, info=info)
        assert opened.hex() == node["sealed_share_plaintext"]
        c_s = bytes.fromhex(node["proof"])  # c ‖ s, canonical little-endian scalars
        assert all(int.from_bytes(half, "little") < L for half in (c_s[:32], c_s[32:]))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_random_draws_follow_the_documented_order(case: dict[str, Any]) -> None:
    """§9: one SHAKE256 stream; scalars are 64 bytes reduced mod L, zero redrawn."""
    inputs, reg, rec = case["inputs"], case["registration"], case["recovery"]
    stream = SHAKE256.new(b"pakr/v1/test-randomness\x00" + bytes.fromhex(inputs["seed"]))

    def draw_scalar() -> str:
        while True:
            value = int.from_bytes(stream.read(64), "little") % L
            if value:
                return scalar(value).hex()

    t = inputs["threshold"]
    assert stream.read(16).hex() == reg["version"]
    assert draw_scalar() == reg["oprf_key"]
    for _ in range(t - 1):
        draw_scalar()
    stream.read(32)  # the one-time Ed25519 seed
    assert draw_scalar() == reg["secret_scalar"]
    for _ in range(t - 1):
        draw_scalar()
    assert draw_scalar() == rec["blind"]
    assert stream.read(16).hex() == rec["attempt_id"]
    assert stream.read(32).hex() == rec["reply_key_seed"]
    for node in rec["nodes"]:
        draw_scalar()  # the DLEQ proof nonce
        assert stream.read(16).hex() == node["nonce"]
