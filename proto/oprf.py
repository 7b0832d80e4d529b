"""RFC 9497 (V)OPRF, suite ristretto255-SHA512, modes OPRF (0x00) and VOPRF (0x01).

Written over :mod:`pakr.proto.group` and ``hashlib`` and checked byte-for-byte against the
RFC's test vectors (``tests/vectors/rfc9497-ristretto255-sha512.json``). The functions follow
the RFC's names and steps; the VOPRF proof is split out (``generate_proof``/``verify_proof``)
so a threshold node can prove its own share ``K_i = k_i·G`` (docs/protocol.md §4).

Why VOPRF rather than OPRF: the DLEQ proof binds each evaluation to the node's signed public
share, so a node cannot answer with a different key and steer the client to a wrong output.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import MalformedMessage
from .group import Element, Scalar
from .lengths import SCALAR_LEN

__all__ = [
    "Mode",
    "Proof",
    "blind",
    "blind_evaluate",
    "context_string",
    "derive_key_pair",
    "evaluate",
    "expand_message_xmd",
    "finalize",
    "generate_proof",
    "hash_to_group",
    "hash_to_scalar",
    "verify_proof",
]


class Mode(enum.IntEnum):
    """RFC 9497 §3.1 protocol modes (POPRF is not used by pakr)."""

    OPRF = 0
    VOPRF = 1


_IDENTIFIER = b"ristretto255-SHA512"
_SHA512_BLOCK = 128  # s_in_bytes
_SHA512_OUT = 64  # b_in_bytes


def _i2osp(value: int, length: int) -> bytes:
    """RFC 8017 I2OSP: big-endian, fixed length; overflow is a programming error."""
    return value.to_bytes(length, "big")


def _lp(data: bytes) -> bytes:
    """``I2OSP(len(data), 2) || data``, the RFC's length-prefixed transcript field."""
    return _i2osp(len(data), 2) + data


def context_string(mode: Mode) -> bytes:
    """RFC 9497 §3.1: ``"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier``."""
    return b"OPRFV1-" + bytes([Mode(mode)]) + b"-" + _IDENTIFIER


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 §5.3.1 expand_message_xmd with SHA-512.

    ristretto255's HashToGroup/HashToScalar need this to turn an input into 64 uniform bytes;
    libsodium's ``from_hash`` only maps already-uniform bytes.
    """
    ell = -(-len_in_bytes // _SHA512_OUT)
    if len_in_bytes < 0 or ell > 255 or len_in_bytes > 65535:
        raise ValueError("expand_message_xmd: requested length too large")
    if len(dst) > 255:
        raise ValueError("expand_message_xmd: DST longer than 255 bytes")
    dst_prime = dst + _i2osp(len(dst), 1)
    msg_prime = bytes(_SHA512_BLOCK) + msg + _i2osp(len_in_bytes, 2) + b"\x00" + dst_prime
    b0 = hashlib.sha512(msg_prime).digest()
    b_prev = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = [b_prev]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, b_prev, strict=True))
        b_prev = hashlib.sha512(mixed + _i2osp(i, 1) + dst_prime).digest()
        out.append(b_prev)
    return b"".join(out)[:len_in_bytes]


def hash_to_group(msg: bytes, mode: Mode = Mode.VOPRF) -> Element:
    """RFC 9497 §4.1 HashToGroup: ``from_hash(expand_message_xmd(msg, "HashToGroup-"||ctx))``.

    ``MalformedMessage`` if the input maps to the identity (probability ~2^-252).
    """
    dst = b"HashToGroup-" + context_string(mode)
    return Element.from_uniform_bytes(expand_message_xmd(msg, dst, 64))


def hash_to_scalar(msg: bytes, mode: Mode = Mode.VOPRF, dst: bytes | None = None) -> Scalar:
    """RFC 9497 §4.1 HashToScalar: 64 expanded bytes reduced mod L (may be zero)."""
    if dst is None:
        dst = b"HashToScalar-" + context_string(mode)
    return Scalar.reduce(expand_message_xmd(msg, dst, 64))


def derive_key_pair(seed: bytes, info: bytes, mode: Mode = Mode.VOPRF) -> tuple[Scalar, Element]:
    """RFC 9497 §3.2.1 DeriveKeyPair (DST ``"DeriveKeyPair" || ctx``, no dash).

    Deterministic key generation; pakr uses random keys, this exists for the RFC vectors.
    """
    if len(seed) != SCALAR_LEN:
        raise ValueError("DeriveKeyPair seed must be 32 bytes")
    derive_input = seed + _lp(info)
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + _i2osp(counter, 1), mode, dst=dst)
        if not sk.is_zero():
            return sk, Element.base_mult(sk)
    raise MalformedMessage("DeriveKeyPairError: no non-zero scalar after 256 attempts")


@dataclass(frozen=True, slots=True)
class Proof:
    """A DLEQ proof ``(c, s)`` (RFC 9497 §2.2), encoded as 64 bytes ``c || s``."""

    c: Scalar
    s: Scalar

    def encode(self) -> bytes:
        return self.c.encoded + self.s.encoded

    @classmethod
    def decode(cls, data: bytes) -> Proof:
        """``MalformedMessage`` on a wrong length or a non-canonical scalar.

        Zero scalars are accepted here (they are merely unlikely); such a proof simply fails
        :func:`verify_proof`.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != 2 * SCALAR_LEN:
            raise MalformedMessage(f"a proof must be {2 * SCALAR_LEN} bytes")
        raw = bytes(data)
        return cls(
            Scalar.decode(raw[:SCALAR_LEN], allow_zero=True),
            Scalar.decode(raw[SCALAR_LEN:], allow_zero=True),
        )


def blind(
    input: bytes,
    *,
    blind: Scalar | None = None,
    mode: Mode = Mode.VOPRF,
) -> tuple[Scalar, Element]:
    """RFC 9497 §3.3.1 Blind: returns ``(blind, blinded_element)``.

    The blind is random unless given (tests only). ``MalformedMessage`` (the RFC's
    InvalidInputError) if ``input`` maps to the identity.
    """
    r = Scalar.random() if blind is None else blind
    if r.is_zero():
        raise ValueError("the blind must be non-zero")
    return r, hash_to_group(input, mode) * r


def blind_evaluate(sk: Scalar, blinded: Element) -> Element:
    """RFC 9497 §3.3.1 BlindEvaluate: ``sk · blinded`` (the proof is made separately)."""
    return blinded * sk


def _seed(B: Element, mode: Mode) -> bytes:  # noqa: N803 - RFC names
    seed_dst = b"Seed-" + context_string(mode)
    return hashlib.sha512(_lp(B.encoded) + _lp(seed_dst)).digest()


def _composite_weights(
    B: Element,  # noqa: N803 - RFC names
    C: Sequence[Element],  # noqa: N803
    D: Sequence[Element],  # noqa: N803
    mode: Mode,
) -> list[Scalar]:
    """The per-item weights d_i of RFC 9497 §2.2.1 ComputeComposites."""
    if len(C) != len(D) or not C:
        raise ValueError("C and D must be non-empty and of equal length")
    if len(C) > 0xFFFF:
        raise ValueError("batch too large")
    seed = _seed(B, mode)
    weights = []
    for i, (ci, di) in enumerate(zip(C, D, strict=True)):
        transcript = _lp(seed) + _i2osp(i, 2) + _lp(ci.encoded) + _lp(di.encoded) + b"Composite"
        weights.append(hash_to_scalar(transcript, mode))
    return weights


def _weighted_sum(weights: Sequence[Scalar], elements: Sequence[Element]) -> Element:
    total: Element | None = None
    for w, e in zip(weights, elements, strict=True):
        term = e * w
        total = term if total is None else total + term
    assert total is not None
    return total


def _challenge(
    B: Element,  # noqa: N803 - RFC names
    M: Element,  # noqa: N803
    Z: Element,  # noqa: N803
    t2: Element,
    t3: Element,
    mode: Mode,
) -> Scalar:
    transcript = (
        _lp(B.encoded)
        + _lp(M.encoded)
        + _lp(Z.encoded)
        + _lp(t2.encoded)
        + _lp(t3.encoded)
        + b"Challenge"
    )
    return hash_to_scalar(transcript, mode)


def generate_proof(
    k: Scalar,
    A: Element,  # noqa: N803 - RFC names
    B: Element,  # noqa: N803
    C: Sequence[Element],  # noqa: N803
    D: Sequence[Element],  # noqa: N803
    *,
    r: Scalar | None = None,
    mode: Mode = Mode.VOPRF,
) -> Proof:
    """RFC 9497 §2.2.1 GenerateProof: proves ``B = k·A`` and ``D[i] = k·C[i]`` for all i.

    Uses ComputeCompositesFast (the prover knows k). ``r`` is the proof nonce, random unless
    given (test vectors only: a repeated r with a different challenge reveals k).
    """
    weights = _composite_weights(B, C, D, mode)
    M = _weighted_sum(weights, C)  # noqa: N806 - RFC names
    Z = M * k  # noqa: N806
    nonce = Scalar.random() if r is None else r
    # A is the generator in every pakr proof: the fixed-base multiplication is ~3x cheaper.
    t2 = Element.base_mult(nonce) if Element.generator() == A else A * nonce
    t3 = M * nonce
    c = _challenge(B, M, Z, t2, t3, mode)
    s = nonce - c * k
    return Proof(c, s)


def verify_proof(
    A: Element,  # noqa: N803 - RFC names
    B: Element,  # noqa: N803
    C: Sequence[Element],  # noqa: N803
    D: Sequence[Element],  # noqa: N803
    proof: Proof,
    mode: Mode = Mode.VOPRF,
) -> bool:
    """RFC 9497 §2.2.2 VerifyProof. Returns False on any mismatch; never raises for
    well-typed inputs (a degenerate proof or composite that hits the identity is a mismatch).
    """
    try:
        weights = _composite_weights(B, C, D, mode)
        M = _weighted_sum(weights, C)  # noqa: N806 - RFC names
        Z = _weighted_sum(weights, D)  # noqa: N806
        s_a = Element.base_mult(proof.s) if Element.generator() == A else A * proof.s
        t2 = s_a + B * proof.c
        t3 = M * proof.s + Z * proof.c
        expected = _challenge(B, M, Z, t2, t3, mode)
    except (MalformedMessage, ValueError):
        return False
    return expected == proof.c  # Scalar.__eq__ is constant-time


def _output(input: bytes, element: Element) -> bytes:
    """The RFC's final hash: ``SHA512(len||input || len||element || "Finalize")``."""
    return hashlib.sha512(_lp(input) + _lp(element.encoded) + b"Finalize").digest()


def finalize(
    input: bytes,
    blind: Scalar,
    evaluated: Element,
    mode: Mode = Mode.VOPRF,
) -> bytes:
    """RFC 9497 §3.3.1 Finalize: unblind ``evaluated`` and hash; 64-byte output.

    The caller must have verified the proof first (VOPRF). ``mode`` is accepted for symmetry:
    the output hash itself does not depend on it (the mode enters through HashToGroup).
    """
    del mode
    return _output(input, evaluated * blind.invert())


def evaluate(sk: Scalar, input: bytes, mode: Mode = Mode.VOPRF) -> bytes:
    """RFC 9497 §3.3.2 Evaluate: the unblinded server-side computation, equal to what
    Blind/BlindEvaluate/Finalize give the client. Used at registration, where the client
    briefly holds the whole key."""
    return _output(input, hash_to_group(input, mode) * sk)
