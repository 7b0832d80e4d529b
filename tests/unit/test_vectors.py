"""pakr's own protocol vectors (tests/vectors/pakr-v2.json): regenerate and replay them.

The first test pins the file to the generator (tools/genvectors.py). The second recomputes
every derived value from the recorded inputs with the primitives directly, the way another
implementation would, so a change to any derivation shows up as a named mismatch.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from Crypto.Hash import SHAKE256
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pakr.proto import kdf, oprf, seal, shamir
from pakr.proto.group import Element, Scalar
from pakr.proto.kdf import Argon2Params
from pakr.proto.oprf import Proof

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "vectors" / "pakr-v2.json").read_text(encoding="utf-8"))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("genvectors", ROOT / "tools" / "genvectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["genvectors"] = module
    spec.loader.exec_module(module)
    return module


def test_file_matches_the_generator() -> None:
    generator = _generator()
    assert generator.masked(generator.generate()) == generator.masked(VECTORS), (
        "run: python tools/genvectors.py"
    )


def h(value: str) -> bytes:
    return bytes.fromhex(value)


SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def xwing_key_pair(seed: bytes) -> tuple[hpke.MLKEM768X25519PrivateKey, bytes]:
    """X-Wing's key derivation from its 32-byte seed, written out from the primitives."""
    expanded = SHAKE256.new(seed).read(96)
    mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    x_key = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = mlkem_key.public_key().public_bytes_raw() + x_key.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(mlkem_key, x_key), public


@pytest.mark.parametrize("case", VECTORS["cases"], ids=[c["name"] for c in VECTORS["cases"]])
def test_replay_every_derived_value(case: dict[str, Any]) -> None:
    inp, reg, rec = case["inputs"], case["registration"], case["recovery"]
    tenant, user, t = inp["tenant"], inp["user_id"], inp["threshold"]
    version = h(reg["version"])
    nodes = {n["index"]: h(n["id"]) for n in inp["nodes"]}
    params = Argon2Params(**inp["argon2"])

    assert kdf.tuple_hash(b"pakr/v1/salt", tenant.encode(), user.encode(), version) == h(
        reg["salt"]
    )
    stretched = kdf.argon2id(inp["password"].encode(), h(reg["salt"]), params, 64)
    assert stretched[:32] == h(reg["access_key"])
    assert stretched[32:] == h(reg["encryption_key_seed"])

    k = Scalar.decode(h(reg["oprf_key"]))
    output = oprf.evaluate(k, h(reg["access_key"]))
    assert output == h(reg["oprf_output"])
    unlock_key = kdf.mac(output, b"pakr/v1/unlock-key")
    assert unlock_key == h(reg["unlock_key"])
    assert kdf.mac(output, b"pakr/v1/commitment", h(reg["access_key"])) == h(reg["commitment"])

    s = h(reg["secret_scalar"])
    enc_key = kdf.mac(h(reg["encryption_key_seed"]), b"pakr/v1/encryption-key", s)
    assert enc_key == h(reg["encryption_key"])
    ad = kdf.tuple_hash(b"pakr/v1/secret-ad", tenant.encode(), user.encode(), version)
    assert ad == h(reg["secret_ad"])
    assert seal.decrypt_secret(enc_key, h(reg["encrypted_secret"]), ad) == h(inp["secret"])

    vk = Ed25519PublicKey.from_public_bytes(h(reg["verifying_key"]))
    k_shares = {}
    s_shares = {}
    for node in reg["nodes"]:
        index, node_id = node["index"], nodes[node["index"]]
        k_i = Scalar.decode(h(node["oprf_key_share"]))
        k_shares[index] = k_i
        s_shares[index] = Scalar.decode(h(node["secret_share"]))
        assert Element.base_mult(k_i).encoded == h(node["oprf_public_share"])
        argon = inp["argon2"]
        statement = kdf.tuple_hash(
            b"pakr/v1/oprf-key",
            tenant.encode(),
            user.encode(),
            version,
            kdf.u64(inp["epoch"]),
            node_id,
            kdf.u64(index),
            h(node["oprf_public_share"]),
            kdf.u64(inp["max_guesses"]),
            kdf.u64(argon["memory_kib"]),
            kdf.u64(argon["iterations"]),
            kdf.u64(argon["parallelism"]),
        )
        assert statement == h(node["oprf_key_statement"])
        vk.verify(h(node["oprf_key_signature"]), statement)
        node_key, node_public = xwing_key_pair(h(node["hpke_seed"]))
        assert node_public == h(node["hpke_public_key"])
        info = kdf.tuple_hash(
            b"pakr/v1/hpke-register2",
            tenant.encode(),
            user.encode(),
            node_id,
            version,
            kdf.u64(inp["epoch"]),
        )
        assert info == h(node["register2_info"])
        plaintext = SUITE.decrypt(h(node["sealed_shares"]), node_key, info=info)
        assert plaintext == h(node["sealed_shares_plaintext"])
        assert plaintext == h(node["oprf_key_share"]) + h(node["secret_share"]) + h(
            node["unlock_tag"]
        ) + h(reg["encrypted_secret"])
        tag = kdf.mac(unlock_key, b"pakr/v1/unlock-tag", node_id)
        assert tag == h(node["unlock_tag"])
        commitment = kdf.mac(
            unlock_key,
            b"pakr/v1/secret-commitment",
            node_id,
            h(node["secret_share"]),
            h(reg["encrypted_secret"]),
        )
        assert commitment == h(node["secret_commitment"])
    subset = dict(list(k_shares.items())[-t:])
    assert shamir.reconstruct(subset, t) == k
    assert shamir.reconstruct(dict(list(s_shares.items())[:t]), t).encoded == s

    reply_key, reply_public = xwing_key_pair(h(rec["reply_key_seed"]))
    assert reply_public == h(rec["reply_key"])
    blind = Scalar.decode(h(rec["blind"]))
    blinded = oprf.hash_to_group(h(reg["access_key"])) * blind
    assert blinded.encoded == h(rec["blinded_element"])
    evaluations = {}
    for node in rec["nodes"]:
        index = node["index"]
        z = Element.decode(h(node["evaluated_element"]))
        assert z == blinded * k_shares[index]
        public = Element.base_mult(k_shares[index])
        proof = Proof.decode(h(node["proof"]))
        assert oprf.verify_proof(Element.generator(), public, [blinded], [z], proof)
        evaluations[index] = z
        tag = kdf.mac(unlock_key, b"pakr/v1/unlock-tag", nodes[index])
        expected = kdf.mac(
            tag,
            b"pakr/v1/unlock-proof",
            h(node["nonce"]),
            h(rec["attempt_id"]),
            h(rec["reply_key"]),
        )
        assert expected == h(node["unlock_proof"])
        reset = kdf.mac(tag, b"pakr/v1/reset-proof", version, h(node["reset_nonce"]))
        assert reset == h(node["reset_proof"])
        info = kdf.tuple_hash(
            b"pakr/v1/hpke-recover3",
            tenant.encode(),
            user.encode(),
            nodes[index],
            version,
            h(rec["attempt_id"]),
        )
        assert info == h(node["recover3_info"])
        assert SUITE.decrypt(h(node["sealed_share"]), reply_key, info=info) == h(
            node["sealed_share_plaintext"]
        )
    combined = shamir.combine_elements(evaluations, t)
    assert oprf.finalize(h(reg["access_key"]), blind, combined) == output
    assert h(rec["secret"]) == h(inp["secret"])
