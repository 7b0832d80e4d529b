"""Generate pakr's own protocol test vectors: ``tests/vectors/pakr-v2.json``.

Each case fixes the inputs (tenant, user, password, secret, node ids and indices, Argon2
parameters) and a seed for the deterministic randomness stream, then runs registration and
recovery with the pure protocol steps and records every derived value of docs/protocol.md §3-4,
byte for byte. Another implementation can replay a case: draw its random values in the order
listed under ``random`` and compare each derived value. ``tests/unit/test_vectors.py`` checks
that the committed file equals a fresh generation and recomputes the values one by one.

HPKE ciphertexts (every ``sealed_*`` value) use a fresh ephemeral key inside ``cryptography``
and so differ on every run: the file keeps one generation's ciphertexts, the comparison with a
fresh generation skips them (:func:`masked`), and the replay test decrypts them with the
recorded keys and ``info``. Another implementation checks that it opens them, and that the
node side of this one opens what it seals.

Usage: ``python tools/genvectors.py [OUT]`` (default: tests/vectors/pakr-v2.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pakr.proto import hpke, kdf, oprf, shamir
from pakr.proto.choice import VersionChoice
from pakr.proto.group import Element
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import PROTOCOL_VERSION, NodeRef, Recover2Reply, Recover3Reply, UserRef
from pakr.proto.randomness import DeterministicRandomness
from pakr.proto.recover import finish_recover2, finish_recover3, start_recover2
from pakr.proto.register import new_version, prepare_registration
from pakr.proto.sealed import (
    Register2Shares,
    open_recover3_reply,
    seal_recover3_reply,
    seal_register2_shares,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "vectors" / "pakr-v2.json"
ARGON2 = Argon2Params(memory_kib=19456, iterations=2, parallelism=1)

CASES: list[dict[str, Any]] = [
    {
        "name": "2-of-3, 32-byte secret",
        "seed": "01",
        "tenant": "acme",
        "user_id": "alice@example.com",
        "password": "correct horse battery staple",
        "secret": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "threshold": 2,
        "indices": [1, 2, 3],
        "epoch": 1,
        "max_guesses": 10,
    },
    {
        "name": "3-of-5, empty secret, recover with nodes 2, 4, 5",
        "seed": "02",
        "tenant": "wallet",
        "user_id": "ユーザー",
        "password": "pässwörd",
        "secret": "",
        "threshold": 3,
        "indices": [1, 2, 3, 4, 5],
        "recover_with": [2, 4, 5],
        "epoch": 7,
        "max_guesses": 3,
    },
    {
        "name": "3-of-4, 128-byte secret, sparse indices",
        "seed": "03",
        "tenant": "vault",
        "user_id": "u",
        "password": "x",
        "secret": "ab" * 128,
        "threshold": 3,
        "indices": [3, 17, 200, 255],
        "epoch": 2**40,
        "max_guesses": 100,
    },
]


def _node_id(index: int) -> bytes:
    return kdf.tuple_hash(b"pakr/v1/test-node-id", kdf.u64(index))[:16]


def _node_hpke(index: int) -> HpkePrivateKey:
    return HpkePrivateKey.from_seed(kdf.tuple_hash(b"pakr/v1/test-node-hpke", kdf.u64(index)))


def masked(document: Any) -> Any:
    """``document`` with every ``sealed_*`` ciphertext replaced by None (they are random)."""
    if isinstance(document, dict):
        return {k: None if k.startswith("sealed_") else masked(v) for k, v in document.items()}
    if isinstance(document, list):
        return [masked(v) for v in document]
    return document


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case and return its full record (inputs and every derived value, hex)."""
    rng = DeterministicRandomness(bytes.fromhex(case["seed"]))
    user = UserRef(case["tenant"], case["user_id"])
    nodes = [NodeRef(_node_id(i), i) for i in case["indices"]]
    threshold = case["threshold"]
    password = case["password"].encode("utf-8")
    secret = bytes.fromhex(case["secret"])

    version = new_version(rng)
    salt = kdf.registration_salt(user.tenant, user.user_id, version)
    access_key, seed = kdf.stretch_password(password, user.tenant, user.user_id, version, ARGON2)
    plan = prepare_registration(
        user=user,
        nodes=nodes,
        threshold=threshold,
        version=version,
        epoch=case["epoch"],
        expected={},
        access_key=access_key,
        encryption_key_seed=seed,
        secret=secret,
        argon2=ARGON2,
        max_guesses=case["max_guesses"],
        rng=rng,
    )
    requests = [plan.requests[n.node_id] for n in nodes]
    k = shamir.reconstruct(
        {n.index: r.oprf_key_share for n, r in zip(nodes, requests, strict=True)}, threshold
    )
    s = shamir.reconstruct(
        {n.index: r.secret_share for n, r in zip(nodes, requests, strict=True)}, threshold
    )
    oprf_output = oprf.evaluate(k, access_key)
    unlock_key = kdf.unlock_key(oprf_output)

    # Recovery with the first t nodes (or the listed ones).
    use = [n for n in nodes if n.index in case.get("recover_with", case["indices"][:threshold])]
    choice = VersionChoice(
        version=version,
        epoch=case["epoch"],
        argon2=ARGON2,
        nodes=tuple(use),
        pending_nodes=(),
        suspects=(),
    )
    attempt = start_recover2(user, choice, access_key, seed, rng)
    replies: dict[NodeRef, Recover2Reply] = {}
    for node in use:
        req = plan.requests[node.node_id]
        evaluated = oprf.blind_evaluate(req.oprf_key_share, attempt.blinded_element)
        proof = oprf.generate_proof(
            req.oprf_key_share,
            Element.generator(),
            req.oprf_public_share,
            [attempt.blinded_element],
            [evaluated],
            r=rng.scalar(),
        )
        replies[node] = Recover2Reply(
            evaluated_element=evaluated,
            proof=proof,
            oprf_public_share=req.oprf_public_share,
            oprf_key_signature=req.oprf_key_signature,
            verifying_key=req.verifying_key,
            commitment=req.commitment,
            guesses_remaining=case["max_guesses"] - 1,
            nonce=rng.bytes(16),
            max_guesses=case["max_guesses"],
        )
    unlocked = finish_recover2(attempt, replies, threshold=threshold)
    sealed_shares = {
        n: seal_register2_shares(
            Register2Shares(r.oprf_key_share, r.secret_share, r.unlock_tag, r.encrypted_secret),
            user=user,
            node_id=n.node_id,
            version=version,
            epoch=case["epoch"],
            node_key=_node_hpke(n.index).public,
        )
        for n, r in zip(nodes, requests, strict=True)
    }
    releases = {
        node: Recover3Reply(
            secret_share=plan.requests[node.node_id].secret_share,
            encrypted_secret=plan.requests[node.node_id].encrypted_secret,
            secret_commitment=plan.requests[node.node_id].secret_commitment,
        )
        for node in use
    }
    sealed_replies = {
        n: seal_recover3_reply(
            releases[n],
            user=user,
            node_id=n.node_id,
            version=version,
            attempt_id=attempt.attempt_id,
            reply_key=attempt.reply_key.public,
        )
        for n in use
    }
    opened = {
        n: open_recover3_reply(
            sealed_replies[n],
            user=user,
            node_id=n.node_id,
            version=version,
            attempt_id=attempt.attempt_id,
            reply_key=attempt.reply_key,
        )
        for n in use
    }
    recovered = finish_recover3(unlocked, opened, threshold=threshold)
    assert recovered == secret, "vector case does not round-trip"

    first = requests[0]
    return {
        "name": case["name"],
        "inputs": {
            key: case[key]
            for key in ("seed", "tenant", "user_id", "password", "secret", "threshold", "epoch")
        }
        | {
            "max_guesses": case["max_guesses"],
            "argon2": {"memory_kib": 19456, "iterations": 2, "parallelism": 1},
            "nodes": [{"id": n.node_id.hex(), "index": n.index} for n in nodes],
            "recover_with": [n.index for n in use],
        },
        "random": "DeterministicRandomness(seed): SHAKE256(b'pakr/v1/test-randomness\\x00' ||"
        " seed); draws in order: version(16), k, k coefficients (t-1), Ed25519 seed(32), s,"
        " s coefficients (t-1), blind, attempt_id(16), reply key seed(32), then per"
        " recovering node: proof nonce r, node nonce(16). Scalars: 64 bytes reduced mod q,"
        " zero redrawn. HPKE ephemeral keys are not drawn from this stream: sealed_* values"
        " are one run's ciphertexts, to be opened, not reproduced.",
        "registration": {
            "version": version.hex(),
            "salt": salt.hex(),
            "access_key": access_key.hex(),
            "encryption_key_seed": seed.hex(),
            "oprf_key": k.encoded.hex(),
            "oprf_output": oprf_output.hex(),
            "unlock_key": unlock_key.hex(),
            "commitment": first.commitment.hex(),
            "verifying_key": first.verifying_key.hex(),
            "secret_scalar": s.encoded.hex(),
            "encryption_key": kdf.encryption_key(seed, s.encoded).hex(),
            "secret_ad": kdf.secret_ad(user.tenant, user.user_id, version).hex(),
            "encrypted_secret": first.encrypted_secret.hex(),
            "nodes": [
                {
                    "index": n.index,
                    "oprf_key_share": r.oprf_key_share.encoded.hex(),
                    "oprf_public_share": r.oprf_public_share.encoded.hex(),
                    "oprf_key_statement": kdf.oprf_key_statement(
                        user.tenant,
                        user.user_id,
                        version,
                        case["epoch"],
                        n.node_id,
                        n.index,
                        r.oprf_public_share.encoded,
                        r.max_guesses,
                        r.argon2,
                    ).hex(),
                    "oprf_key_signature": r.oprf_key_signature.hex(),
                    "hpke_seed": _node_hpke(n.index).seed.hex(),
                    "hpke_public_key": _node_hpke(n.index).public.encoded.hex(),
                    "register2_info": hpke.register2_info(
                        user, n.node_id, version, case["epoch"]
                    ).hex(),
                    "sealed_shares_plaintext": (
                        r.oprf_key_share.encoded
                        + r.secret_share.encoded
                        + r.unlock_tag
                        + r.encrypted_secret
                    ).hex(),
                    "sealed_shares": sealed_shares[n].hex(),
                    "unlock_tag": r.unlock_tag.hex(),
                    "secret_share": r.secret_share.encoded.hex(),
                    "secret_commitment": r.secret_commitment.hex(),
                }
                for n, r in zip(nodes, requests, strict=True)
            ],
        },
        "recovery": {
            "blind": attempt.blind.encoded.hex(),
            "blinded_element": attempt.blinded_element.encoded.hex(),
            "attempt_id": attempt.attempt_id.hex(),
            "reply_key_seed": attempt.reply_key.seed.hex(),
            "reply_key": attempt.reply_key.public.encoded.hex(),
            "nodes": [
                {
                    "index": n.index,
                    "evaluated_element": replies[n].evaluated_element.encoded.hex(),
                    "proof": replies[n].proof.encode().hex(),
                    "nonce": replies[n].nonce.hex(),
                    "unlock_proof": unlocked.requests[n].unlock_proof.hex(),
                    "reset_nonce": RESET_NONCE.hex(),
                    "reset_proof": kdf.reset_proof(
                        kdf.unlock_tag(unlocked.unlock_key, n.node_id), version, RESET_NONCE
                    ).hex(),
                    "recover3_info": hpke.recover3_info(
                        user, n.node_id, version, attempt.attempt_id
                    ).hex(),
                    "sealed_share_plaintext": (
                        releases[n].secret_share.encoded
                        + releases[n].encrypted_secret
                        + releases[n].secret_commitment
                    ).hex(),
                    "sealed_share": sealed_replies[n].hex(),
                }
                for n in use
            ],
            "secret": recovered.hex(),
        },
    }


RESET_NONCE = bytes(range(40))  # a ResetGuesses nonce is node-issued; any 40 bytes do here


def generate() -> dict[str, Any]:
    """The whole vector file's content."""
    return {
        "description": "pakr protocol v2 test vectors (docs/protocol.md), generated by"
        " tools/genvectors.py; all byte strings hex, node ids = TupleHash256(u64(index),"
        " S='pakr/v1/test-node-id')[:16], node HPKE seeds = TupleHash256(u64(index),"
        " S='pakr/v1/test-node-hpke')",
        "protocol_version": PROTOCOL_VERSION,
        "hpke_suite": {
            "kem": "X-Wing (MLKEM768-X25519), 0x647a",
            "kdf": "HKDF-SHA256, 0x0001",
            "aead": "ChaCha20-Poly1305, 0x0003",
            "mode": "base",
        },
        "labels": {
            name: getattr(kdf, name).decode()
            for name in sorted(dir(kdf))
            if name.startswith("LABEL_")
        },
        "cases": [run_case(case) for case in CASES],
    }


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    out.write_text(json.dumps(generate(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
