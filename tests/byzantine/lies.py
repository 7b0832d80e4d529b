"""The catalogue of lies: every field of every reply a node sends, plus stalls and hangs.

Each :class:`~tests.byzantine.proxy.Lie` rewrites one method's reply. ``NAMED`` lies make a
reply fail verification (or disagree with the group that unlocks the attempt), so a liar
telling one of them and asked must be named by the client; the others (a claim of "locked",
"no version", an older epoch, stalls, refusals) look like an honest node that missed updates
or is slow, and need no name.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pakr.proto.errors import ErrorKind
from pakr.proto.group import ORDER, Element, Scalar
from tests.byzantine.proxy import Lie

MAX_U64 = 2**64 - 1
FIELD_P = 2**255 - 19
HANG = 30.0  # far past any client deadline: the call never answers in time
STALL = 0.4  # past the hedge delay, well inside the deadline


def _flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _random_element() -> bytes:
    return Element.base_mult(Scalar.random()).encoded


def _other_vk() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# ----------------------------------------------------------------- Recover1 / Register1


def _status(field: str, rewrite: Any) -> Any:
    def apply(msg: Any) -> None:
        rewrite(msg.status)

    return apply


def _committed(change: Any) -> Any:
    def apply(status: Any) -> None:
        if status.HasField("committed"):
            change(status.committed)

    return apply


def _set(attr: str, value: Any) -> Any:
    return lambda info: setattr(info, attr, value)


def _locked(info: Any) -> None:
    info.locked = True
    info.guesses_remaining = 0


def _fake_newer_pending(status: Any) -> None:
    if status.HasField("committed"):
        status.pending.CopyFrom(status.committed)
        status.pending.version = os.urandom(16)
        status.pending.epoch = status.committed.epoch + 1


def _fake_committed(epoch: int) -> Any:
    def apply(status: Any) -> None:
        status.committed.version = os.urandom(16)
        status.committed.epoch = epoch
        status.committed.argon2.memory_kib = 19 * 1024
        status.committed.argon2.iterations = 2
        status.committed.argon2.parallelism = 1
        status.committed.guesses_remaining = 1

    return apply


def _status_lies(method: str) -> list[Lie]:
    def lie(name: str, change: Any) -> Lie:
        return Lie(f"{method}.{name}", rewrite=_status(name, change))

    return [
        lie("guesses=1", _committed(_set("guesses_remaining", 1))),
        lie("guesses=0", _committed(_set("guesses_remaining", 0))),
        lie("guesses=max", _committed(_set("guesses_remaining", 2**32 - 1))),
        lie("locked", _committed(_locked)),
        lie("no-version", lambda s: s.ClearField("committed")),
        lie("other-version", _committed(_set("version", os.urandom(16)))),
        lie("version-short", _committed(_set("version", b"\x01" * 15))),
        lie("epoch+1", _committed(lambda i: setattr(i, "epoch", i.epoch + 1))),
        lie("epoch-older", _committed(lambda i: setattr(i, "epoch", max(1, i.epoch - 1)))),
        lie("epoch=max", _committed(_set("epoch", MAX_U64))),
        lie("argon2-weak", _committed(lambda i: setattr(i.argon2, "memory_kib", 8))),
        lie("argon2-other", _committed(lambda i: setattr(i.argon2, "iterations", 3))),
        lie("tombstone=newer", lambda s: setattr(s, "tombstone_epoch", s.committed.epoch + 1)),
        lie("tombstone=max", lambda s: setattr(s, "tombstone_epoch", MAX_U64)),
        lie("pending-newer", _fake_newer_pending),
        lie("fake-committed-max", _fake_committed(MAX_U64)),
        Lie(f"{method}.refuse-locked", refuse=ErrorKind.LOCKED, before=True),
        Lie(f"{method}.stall", stall=STALL),
        Lie(f"{method}.hang", stall=HANG, before=True),
    ]


RECOVER1 = _status_lies("Recover1")
REGISTER1 = [
    lie
    for lie in _status_lies("Register1")
    if lie.name.split(".", 1)[1]
    in {
        "fake-committed-max",
        "tombstone=max",
        "locked",
        "other-version",
        "epoch=max",
        "no-version",
        "stall",
    }
]

LURE = Lie(
    "Recover1.guesses=1", rewrite=_status("guesses", _committed(_set("guesses_remaining", 1)))
)
"""Every liar in Recover2/Recover3 also claims one guess left, to be asked first."""

# ----------------------------------------------------------------- Recover2


def _r2(name: str, field: str, value: Any) -> Lie:
    def apply(msg: Any) -> None:
        new = value(getattr(msg, field)) if callable(value) else value
        setattr(msg, field, new)

    return Lie(f"Recover2.{name}", rewrite=apply)


def _wrong_point(z: bytes) -> bytes:
    return (Element.decode(z) + Element.generator()).encoded


RECOVER2_NAMED = [
    _r2("Z=identity-disguised", "evaluated_element", bytes(31) + b"\x80"),
    _r2("Z=top-bit", "evaluated_element", lambda z: z[:31] + bytes([z[31] | 0x80])),
    _r2("Z=identity", "evaluated_element", bytes(32)),
    _r2("Z=invalid", "evaluated_element", b"\xff" * 32),
    _r2("Z=non-canonical-p", "evaluated_element", FIELD_P.to_bytes(32, "little")),
    _r2("Z=short", "evaluated_element", lambda z: z[:31]),
    _r2("Z=wrong-point", "evaluated_element", _wrong_point),
    _r2("Z=random-point", "evaluated_element", lambda z: _random_element()),
    _r2("proof=flipped", "proof", lambda p: _flip(p, 40)),
    _r2("proof=c>=L", "proof", lambda p: ORDER.to_bytes(32, "little") + p[32:]),
    _r2("K=other", "oprf_public_share", lambda k: _random_element()),
    _r2("K=identity-disguised", "oprf_public_share", bytes(31) + b"\x80"),
    _r2("signature=flipped", "oprf_key_signature", lambda s: _flip(s, 5)),
    _r2("vk=other", "verifying_key", lambda v: _other_vk()),
    _r2("vk=garbage", "verifying_key", b"\x02" * 32),
    _r2("commitment=flipped", "commitment", lambda c: _flip(c)),
    _r2("nonce=short", "nonce", lambda n: n[:15]),
    _r2("max_guesses+1", "max_guesses", lambda m: m + 1),  # outside sig_i's policy
]
RECOVER2_QUIET = [
    _r2("nonce=flipped", "nonce", lambda n: _flip(n)),
    _r2("guesses=0", "guesses_remaining", 0),
    Lie("Recover2.refuse-locked", refuse=ErrorKind.LOCKED, before=True),
    Lie("Recover2.refuse-invalid", refuse=ErrorKind.INVALID_REQUEST, before=True),
    Lie("Recover2.stall", stall=STALL),
    Lie("Recover2.hang", stall=HANG, before=True),
]

# ----------------------------------------------------------------- Recover3


def _r3(name: str, field: str, value: Any) -> Lie:
    def apply(msg: Any) -> None:
        new = value(getattr(msg, field)) if callable(value) else value
        setattr(msg, field, new)

    return Lie(f"Recover3.{name}", rewrite=apply)


# Protocol 2 seals the share (s_i, ciphertext, commitment) to a key the client sends with
# Recover3, so a proxy in front of a node can only damage the sealed bytes; forging a share
# inside the seal needs the node itself (tests/security/sec_malicious_node.py does that).
RECOVER3_NAMED: list[Lie] = []
RECOVER3_QUIET = [
    _r3("sealed=flipped", "sealed_share", lambda c: _flip(c, len(c) // 2)),
    _r3("sealed=truncated", "sealed_share", lambda c: c[: len(c) - 1]),
    _r3("sealed=empty", "sealed_share", b""),
    Lie("Recover3.refuse-bad-tag", refuse=ErrorKind.BAD_UNLOCK_TAG),
    Lie("Recover3.stall", stall=STALL),
    Lie("Recover3.hang", stall=HANG, before=True),
]

NAMED = frozenset(lie.name for lie in RECOVER2_NAMED + RECOVER3_NAMED)
VERIFIED_ONLY = frozenset(
    {"Recover2.proof=flipped", "Recover2.K=other", "Recover2.signature=flipped"}
)
"""Lies next to a correct Z_i: harmless, and caught only when the client verifies replies one
by one (the combination failed, e.g. a wrong password). The lazy client need not name them
when the combination matches, so the matrix requires their names only from a liar that lured
the client into asking it first, where the wrong-password try forces verification."""
RECOVER_LIES = RECOVER1 + RECOVER2_NAMED + RECOVER2_QUIET + RECOVER3_NAMED + RECOVER3_QUIET
ALL_LIES = RECOVER_LIES + REGISTER1


def method_of(lie: Lie) -> str:
    return lie.name.split(".", 1)[0]
