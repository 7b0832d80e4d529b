"""Reset inside the recovery (docs/protocol.md §4a): heal stale guess counts, one step per function.

A successful recovery resets the count at the t nodes that release their share (Recover3).
Guesses counted earlier at the other nodes holding the version would stay, and recovery asks
the nodes with the fewest guesses left first, so under churn an honest user drifts towards
"locked out". Once the combination matches, the client knows every node's unlock tag and
proves it to each of the other holders over a nonce that node issued with Recover1:

* node: :func:`issue_nonce` with every Recover1 (stateless: expiry, random part and a MAC
  under a key derived from the node's data key, so replicas sharing a database agree);
* client: :func:`reset_targets` (who needs one) and :func:`reset_requests` (the proofs), sent
  alongside Recover3, once, within the recovery's deadline, never retried;
* node: :func:`open_nonce` (authentic, unexpired, for this user) and :func:`check_reset`
  (holds the version, not locked, proof under its tag); the store then spends the nonce
  durably and resets the count in one transaction (:func:`node_reset`).

A reset that arrived late would wipe guesses counted after the login, so the nonce lives
:data:`NONCE_TTL_SECONDS` and is single-use: a replay, a proof for another node or another
version, a missing token or an expired nonce reset nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Set
from dataclasses import replace

from pakr.proto import kdf
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.messages import RESET_NONCE_LEN, NodeRef, ResetGuesses, UserRef, UserStatus
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.records import VersionRecord

NONCE_TTL_SECONDS = 60
_RANDOM_LEN = 16
_TAG_LEN = 16


def nonce_key(data_key: bytes) -> bytes:
    """The node's nonce MAC key, derived from its data key (shared by its replicas)."""
    return kdf.mac(data_key, kdf.LABEL_RESET_NONCE, b"nonce-key")


def _nonce_tag(key: bytes, user: UserRef, expires: bytes, random: bytes) -> bytes:
    fields = (user.tenant.encode(), user.user_id.encode(), expires, random)
    return kdf.mac(key, kdf.LABEL_RESET_NONCE, *fields)[:_TAG_LEN]


def issue_nonce(key: bytes, user: UserRef, now: float, rng: Randomness = SYSTEM) -> bytes:
    """Node, Recover1: a fresh nonce for ``user``, valid for :data:`NONCE_TTL_SECONDS`."""
    expires = kdf.u64(int(now) + NONCE_TTL_SECONDS)
    random = rng.bytes(_RANDOM_LEN)
    return expires + random + _nonce_tag(key, user, expires, random)


def open_nonce(key: bytes, user: UserRef, nonce: bytes, now: float) -> float:
    """Node, ResetGuesses: the nonce's expiry if this node issued it for ``user`` and it has
    not expired; else ``NodeRefusal(STALE_ATTEMPT)``. Single use is the store's part."""
    if len(nonce) != RESET_NONCE_LEN:
        raise NodeRefusal(ErrorKind.INVALID_REQUEST, f"reset nonce must be {RESET_NONCE_LEN} bytes")
    expires, random, tag = nonce[:8], nonce[8:-_TAG_LEN], nonce[-_TAG_LEN:]
    if not hmac.compare_digest(tag, _nonce_tag(key, user, expires, random)):
        raise NodeRefusal(
            ErrorKind.STALE_ATTEMPT, "reset nonce was not issued by this node for this user"
        )
    expires_at = float(int.from_bytes(expires, "big"))
    if now >= expires_at:
        raise NodeRefusal(ErrorKind.STALE_ATTEMPT, "reset nonce expired; start a new recovery")
    return expires_at


def nonce_claim_key(user: UserRef, nonce: bytes) -> str:
    """The store key under which a spent nonce is remembered until it expires."""
    return f"{user.tenant}:reset-nonce:{nonce.hex()}"


def reset_targets(
    answers: Mapping[NodeRef, UserStatus],
    *,
    version: bytes,
    releasing: Set[NodeRef],
    evaluated: Set[NodeRef],
) -> tuple[NodeRef, ...]:
    """Client: the nodes to reset — they hold ``version`` unlocked, are not among the
    ``releasing`` nodes (Recover3 resets those), issued a nonce, and either counted this
    attempt (``evaluated``) or reported guesses spent. A node at its full count is skipped,
    so a quiet login writes nothing extra."""
    targets = []
    for node, status in sorted(answers.items(), key=lambda item: item[0].index):
        if node in releasing or len(status.reset_nonce) != RESET_NONCE_LEN:
            continue
        for info in (status.committed, status.pending):
            if info is None or info.version != version or info.locked:
                continue
            spent = info.max_guesses == 0 or info.guesses_remaining < info.max_guesses
            if spent or node in evaluated:
                targets.append(node)
            break
    return tuple(targets)


def reset_requests(
    unlock_key: bytes,
    version: bytes,
    answers: Mapping[NodeRef, UserStatus],
    targets: tuple[NodeRef, ...],
) -> dict[NodeRef, ResetGuesses]:
    """Client: one proof per target, under its unlock tag over its own nonce."""
    requests = {}
    for node in targets:
        nonce = answers[node].reset_nonce
        tag = kdf.unlock_tag(unlock_key, node.node_id)
        requests[node] = ResetGuesses(
            version=version, nonce=nonce, proof=kdf.reset_proof(tag, version, nonce)
        )
    return requests


def check_reset(record: VersionRecord | None, request: ResetGuesses, now: float) -> None:
    """Node: refuse unless ``record`` (the version named) can be reset by this proof.

    Raises ``NodeRefusal``: NOT_REGISTERED (no such version here: e.g. an older one),
    LOCKED (erased, or its lockout is due), BAD_UNLOCK_TAG (the proof is not under this
    node's tag for this version and nonce). Changes nothing.
    """
    if record is None:
        raise NodeRefusal(ErrorKind.NOT_REGISTERED, "this node holds no such version for the user")
    if record.shares is None or record.lockout_due(now):
        raise NodeRefusal(ErrorKind.LOCKED, "this version is locked out", guesses_remaining=0)
    expected = kdf.reset_proof(record.shares.unlock_tag, record.version, request.nonce)
    if not hmac.compare_digest(expected, request.proof):
        raise NodeRefusal(ErrorKind.BAD_UNLOCK_TAG, "reset proof does not match; nothing reset")


def node_reset(record: VersionRecord) -> VersionRecord:
    """Node: the version after an accepted reset: no guesses counted (the latest attempt,
    if any, is kept: its Recover3 still works once)."""
    return replace(record, guess_count=0)
