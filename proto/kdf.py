"""Password stretching (Argon2id), hashing (TupleHash256) and MACs (KMAC256) of pakr v1.

One named function per derived value of docs/protocol.md §1, so the byte layout of every
derivation lives here once, and each uses its own customization label: no two uses (or two
different field lists) can ever produce the same input. Multi-field inputs are unambiguous —
TupleHash encodes each field's length itself, and MAC inputs prefix each field with its 4-byte
big-endian length — so ``("ab", "c")`` and ``("a", "bc")`` never collide.

Errors: a wrongly sized fixed-length field (version, node_id, scalar share, nonce, attempt_id,
public share) may come off the wire and raises :class:`~pakr.proto.errors.MalformedMessage`;
a MAC key shorter than 32 bytes or bad Argon2 arguments are programming errors (``ValueError``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import ClassVar

from Crypto.Hash import KMAC256, TupleHash256
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from .errors import MalformedMessage, WeakParameters
from .lengths import (
    ATTEMPT_ID_LEN,
    DIGEST_LEN,
    ELEMENT_LEN,
    NODE_ID_LEN,
    NONCE_LEN,
    OPRF_OUTPUT_LEN,
    SCALAR_LEN,
    VERSION_LEN,
)

LABEL_SALT = b"pakr/v1/salt"
LABEL_OPRF_KEY = b"pakr/v1/oprf-key"
LABEL_UNLOCK_KEY = b"pakr/v1/unlock-key"
LABEL_COMMITMENT = b"pakr/v1/commitment"
LABEL_UNLOCK_TAG = b"pakr/v1/unlock-tag"
LABEL_ENCRYPTION_KEY = b"pakr/v1/encryption-key"
LABEL_SECRET_AD = b"pakr/v1/secret-ad"
LABEL_SECRET_COMMITMENT = b"pakr/v1/secret-commitment"
LABEL_UNLOCK_PROOF = b"pakr/v1/unlock-proof"
LABEL_RESET_PROOF = b"pakr/v1/reset-proof"
LABEL_RESET_NONCE = b"pakr/v1/reset-nonce"
LABEL_HPKE_REGISTER2 = b"pakr/v1/hpke-register2"
LABEL_HPKE_RECOVER3 = b"pakr/v1/hpke-recover3"

MIN_KEY_LEN = 32


# --- Argon2id ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """Argon2id cost parameters (RFC 9106): memory in KiB, passes, lanes.

    The client enforces :attr:`FLOOR` and :attr:`CEILING` (docs/protocol.md §4 step 3) so a
    malicious node can neither weaken the hash (cheap offline guessing for whoever gets the
    ciphertext) nor stall the client with absurd costs.
    """

    memory_kib: int
    iterations: int
    parallelism: int

    FLOOR: ClassVar[Argon2Params]
    CEILING: ClassVar[Argon2Params]

    def check(self) -> None:
        """``WeakParameters`` naming the field, its value and the bound it violates."""
        for name in ("memory_kib", "iterations", "parallelism"):
            value = getattr(self, name)
            low = getattr(Argon2Params.FLOOR, name)
            high = getattr(Argon2Params.CEILING, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise WeakParameters(f"argon2 {name} must be an integer")
            if value < low:
                raise WeakParameters(f"argon2 {name}={value} is below the floor {low}")
            if value > high:
                raise WeakParameters(f"argon2 {name}={value} is above the ceiling {high}")


Argon2Params.FLOOR = Argon2Params(memory_kib=19456, iterations=2, parallelism=1)
Argon2Params.CEILING = Argon2Params(memory_kib=1048576, iterations=64, parallelism=16)

DEFAULT_ARGON2 = Argon2Params(memory_kib=65536, iterations=3, parallelism=1)
DEV_ARGON2 = Argon2Params(memory_kib=19456, iterations=2, parallelism=1)
"""The floor itself: for tests and the demo only."""


def argon2id(
    password: bytes,
    salt: bytes,
    params: Argon2Params,
    length: int = 64,
    *,
    secret: bytes | None = None,
    ad: bytes | None = None,
) -> bytes:
    """Argon2id (``cryptography``) of ``password``.

    Does not enforce the floor/ceiling (callers call :meth:`Argon2Params.check` where policy
    applies: the RFC 9106 KAT uses tiny parameters); it only rejects values Argon2 itself
    cannot run. ``secret``/``ad`` (RFC 9106's K and X) are unused by pakr and exist so the
    known-answer test runs through this wrapper.
    """
    if params.parallelism < 1 or params.iterations < 1:
        raise ValueError("argon2 needs parallelism >= 1 and iterations >= 1")
    if params.memory_kib < 8 * params.parallelism:
        raise ValueError("argon2 memory must be at least 8 KiB per lane")
    if len(salt) < 8 or length < 4:
        raise ValueError("argon2 needs a salt of >= 8 bytes and an output of >= 4 bytes")
    kdf = Argon2id(
        salt=salt,
        length=length,
        iterations=params.iterations,
        lanes=params.parallelism,
        memory_cost=params.memory_kib,
        secret=secret,
        ad=ad,
    )
    return kdf.derive(password)


# --- SP 800-185 wrappers ----------------------------------------------------------------------


def _tuple_hash256(custom: bytes, fields: tuple[bytes, ...], length: int) -> bytes:
    """TupleHash256 with one ``update`` per field (each field is length-encoded inside)."""
    h = TupleHash256.new(digest_bytes=length, custom=custom)
    for field in fields:
        h.update(bytes(field))
    out: bytes = h.digest()
    return out


def _kmac256(key: bytes, data: bytes, custom: bytes, length: int) -> bytes:
    """KMAC256 (pycryptodome), key >= 32 bytes."""
    if len(key) < MIN_KEY_LEN:
        raise ValueError(f"KMAC256 keys must be at least {MIN_KEY_LEN} bytes")
    m = KMAC256.new(key=bytes(key), mac_len=length, custom=custom)
    m.update(data)
    out: bytes = m.digest()
    return out


def _enc(fields: tuple[bytes, ...]) -> bytes:
    """Each field prefixed by its 4-byte big-endian length: an injective encoding."""
    parts = []
    for field in fields:
        if len(field) >= 2**32:
            raise ValueError("field too long")
        parts.append(len(field).to_bytes(4, "big"))
        parts.append(bytes(field))
    return b"".join(parts)


def tuple_hash(label: bytes, *fields: bytes) -> bytes:
    """``H(label; fields…)`` = TupleHash256(fields, L=256 bits, S=label)."""
    return _tuple_hash256(label, fields, DIGEST_LEN)


def mac(key: bytes, label: bytes, *fields: bytes) -> bytes:
    """``MAC(key, label; fields…)`` = KMAC256(key, enc(fields), L=256 bits, S=label)."""
    return _kmac256(key, _enc(fields), label, DIGEST_LEN)


def u64(value: int) -> bytes:
    """8-byte big-endian encoding of an integer inside a hashed tuple."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("u64 needs an int")
    if not 0 <= value < 2**64:
        raise ValueError("u64 value out of range 0..2**64-1")
    return value.to_bytes(8, "big")


def _fixed(name: str, value: bytes, length: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) != length:
        raise MalformedMessage(f"{name} must be {length} bytes")
    return bytes(value)


def _utf8(name: str, value: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str")
    return value.encode("utf-8")


# --- derived values (docs/protocol.md) ---------------------------------------------------------


def registration_salt(tenant: str, user_id: str, version: bytes) -> bytes:
    """``salt = H("pakr/v1/salt"; tenant, user_id, version)``: unique per registration, so
    one Argon2id run can only test a guess against one user's one version."""
    return tuple_hash(
        LABEL_SALT,
        _utf8("tenant", tenant),
        _utf8("user_id", user_id),
        _fixed("version", version, VERSION_LEN),
    )


def stretch_password(
    password: bytes, tenant: str, user_id: str, version: bytes, params: Argon2Params
) -> tuple[bytes, bytes]:
    """``access_key ‖ encryption_key_seed = Argon2id(password, salt, params)`` (32 + 32).

    The access key is the OPRF input; the seed never leaves the client and is combined with
    the threshold-shared scalar s, so the nodes alone cannot decrypt the secret.
    """
    out = argon2id(password, registration_salt(tenant, user_id, version), params, 64)
    return out[:32], out[32:]


def oprf_key_statement(
    tenant: str,
    user_id: str,
    version: bytes,
    epoch: int,
    node_id: bytes,
    index: int,
    public_share: bytes,
    max_guesses: int,
    argon2: Argon2Params,
) -> bytes:
    """The digest ``sig_i`` signs: binds ``K_i`` to this user, version, epoch and node, so a
    node cannot present another node's (or an older registration's) public share, and binds
    the version's policy (guess limit, Argon2id parameters), so no node can report its own."""
    return tuple_hash(
        LABEL_OPRF_KEY,
        _utf8("tenant", tenant),
        _utf8("user_id", user_id),
        _fixed("version", version, VERSION_LEN),
        u64(epoch),
        _fixed("node_id", node_id, NODE_ID_LEN),
        u64(index),
        _fixed("public_share", public_share, ELEMENT_LEN),
        u64(max_guesses),
        u64(argon2.memory_kib),
        u64(argon2.iterations),
        u64(argon2.parallelism),
    )


def unlock_key(oprf_output: bytes) -> bytes:
    """``MAC(oprf_output, "pakr/v1/unlock-key";)``: the root of the per-node unlock tags."""
    return mac(_fixed("oprf_output", oprf_output, OPRF_OUTPUT_LEN), LABEL_UNLOCK_KEY)


def commitment(oprf_output: bytes, access_key: bytes) -> bytes:
    """``MAC(oprf_output, "pakr/v1/commitment"; access_key)``: lets the client test the
    password locally before revealing anything that proves knowledge of it."""
    return mac(
        _fixed("oprf_output", oprf_output, OPRF_OUTPUT_LEN),
        LABEL_COMMITMENT,
        _fixed("access_key", access_key, 32),
    )


def unlock_tag(unlock_key: bytes, node_id: bytes) -> bytes:
    """``MAC(unlock_key, "pakr/v1/unlock-tag"; node_id)``: a per-node verifier, so one node's
    tag is useless at another."""
    return mac(unlock_key, LABEL_UNLOCK_TAG, _fixed("node_id", node_id, NODE_ID_LEN))


def encryption_key(encryption_key_seed: bytes, s: bytes) -> bytes:
    """``MAC(encryption_key_seed, "pakr/v1/encryption-key"; s)``: needs both the password
    (seed) and t nodes (s), and is fresh for every registration."""
    return mac(encryption_key_seed, LABEL_ENCRYPTION_KEY, _fixed("s", s, SCALAR_LEN))


def secret_ad(tenant: str, user_id: str, version: bytes) -> bytes:
    """``H("pakr/v1/secret-ad"; tenant, user_id, version)``: the AEAD associated data, so a
    ciphertext cannot be replayed under another user or version."""
    return tuple_hash(
        LABEL_SECRET_AD,
        _utf8("tenant", tenant),
        _utf8("user_id", user_id),
        _fixed("version", version, VERSION_LEN),
    )


def secret_commitment(
    unlock_key: bytes, node_id: bytes, s_share: bytes, encrypted_secret: bytes
) -> bytes:
    """``MAC(unlock_key, "pakr/v1/secret-commitment"; node_id, s_i, encrypted_secret)``: lets
    the client detect a node returning a wrong share or ciphertext."""
    return mac(
        unlock_key,
        LABEL_SECRET_COMMITMENT,
        _fixed("node_id", node_id, NODE_ID_LEN),
        _fixed("s_share", s_share, SCALAR_LEN),
        bytes(encrypted_secret),
    )


def unlock_proof(unlock_tag: bytes, nonce: bytes, attempt_id: bytes, reply_key: bytes) -> bytes:
    """``MAC(unlock_tag_i, "pakr/v1/unlock-proof"; nonce_i, attempt_id, reply_key)``: proves
    knowledge of the tag for this one attempt without sending the tag (no replay), and binds
    the HPKE key the share is to be sealed to, so nobody on the path can swap in their own."""
    return mac(
        unlock_tag,
        LABEL_UNLOCK_PROOF,
        _fixed("nonce", nonce, NONCE_LEN),
        _fixed("attempt_id", attempt_id, ATTEMPT_ID_LEN),
        reply_key,
    )


def reset_proof(unlock_tag: bytes, version: bytes, nonce: bytes) -> bytes:
    """``MAC(unlock_tag_i, "pakr/v1/reset-proof"; version, nonce_i)``: proves knowledge of the
    node's tag for ``version`` over a nonce the node issued, so the guess count can be reset
    at a node that did not release its share (no replay: the nonce is single-use)."""
    return mac(unlock_tag, LABEL_RESET_PROOF, _fixed("version", version, VERSION_LEN), nonce)


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two derived values (tags, commitments, proofs)."""
    return hmac.compare_digest(a, b)
