"""Recovery on a node (docs/protocol.md §4): count the guess durably, evaluate, release.

:func:`admit_recover2` is the reference model of the durable guess count that stores
implement as one conditional UPDATE; :func:`node_recover2` evaluates; :func:`check_recover3`
and :func:`node_recover3` release the share against the unlock proof or keep the guess
counted.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import replace

from pakr.proto import kdf, oprf
from pakr.proto.errors import (
    ErrorKind,
    NodeRefusal,
)
from pakr.proto.group import Element
from pakr.proto.messages import (
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
)
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.records import Attempt, VersionRecord


class Admission(enum.Enum):
    """What a node does with a Recover2 (the reference model of the store's UPDATE)."""

    COUNT = "count"  # a new guess: count it, remember the attempt, evaluate
    REPLAY = "replay"  # the same attempt id and element as the latest: free, same nonce
    NO_GUESSES = "no_guesses"  # limit reached
    LOCKED = "locked"  # shares erased


def admit_recover2(record: VersionRecord, request: Recover2, now: float) -> Admission:
    """Decide a Recover2 against the stored version (no I/O).

    Stores implement this decision as one conditional ``UPDATE … RETURNING`` so concurrent
    requests can never spend more than ``max_guesses``; the storage contract tests check
    that their behaviour matches this function.
    """
    if record.locked or record.lockout_due(now):
        return Admission.LOCKED
    last = record.attempt
    if (
        last is not None
        and last.attempt_id == request.attempt_id
        and last.blinded_element == request.blinded_element.encoded
    ):
        return Admission.REPLAY
    if record.guess_count >= record.max_guesses:
        return Admission.NO_GUESSES
    return Admission.COUNT


def count_guess(
    record: VersionRecord, request: Recover2, nonce: bytes, now: float
) -> VersionRecord:
    """The record after an admitted (``COUNT``) guess: count + 1 and the new latest attempt."""
    return replace(
        record,
        guess_count=record.guess_count + 1,
        attempt=Attempt(
            attempt_id=request.attempt_id,
            blinded_element=request.blinded_element.encoded,
            nonce=nonce,
            started_at=now,
        ),
    )


def node_recover2(
    record: VersionRecord,
    request: Recover2,
    *,
    nonce: bytes,
    rng: Randomness = SYSTEM,
) -> Recover2Reply:
    """Evaluate ``Z_i = k_i·B`` with its DLEQ proof, after the guess is durably counted."""
    if record.shares is None:
        raise NodeRefusal(ErrorKind.LOCKED, "this version is locked out", guesses_remaining=0)
    k_i = record.shares.oprf_key_share
    evaluated = oprf.blind_evaluate(k_i, request.blinded_element)
    proof = oprf.generate_proof(
        k_i,
        Element.generator(),
        record.oprf_public_share,
        [request.blinded_element],
        [evaluated],
        r=rng.scalar(),
    )
    return Recover2Reply(
        evaluated_element=evaluated,
        proof=proof,
        oprf_public_share=record.oprf_public_share,
        oprf_key_signature=record.oprf_key_signature,
        verifying_key=record.verifying_key,
        commitment=record.commitment,
        guesses_remaining=record.guesses_remaining,
        nonce=nonce,
        max_guesses=record.max_guesses,
    )


class Recover3Outcome(enum.Enum):
    MATCH = "match"  # right password: release, reset the count
    MISMATCH = "mismatch"  # wrong proof: the guess stays counted; lock if the limit is spent
    STALE = "stale"  # not the latest attempt, already used, or none: nothing changes


def check_recover3(record: VersionRecord, request: Recover3) -> Recover3Outcome:
    """Classify a Recover3 against the latest attempt (constant-time proof comparison)."""
    attempt = record.attempt
    if (
        record.shares is None
        or attempt is None
        or attempt.used
        or not hmac.compare_digest(attempt.attempt_id, request.attempt_id)
    ):
        return Recover3Outcome.STALE
    expected = kdf.unlock_proof(
        record.shares.unlock_tag, attempt.nonce, attempt.attempt_id, request.reply_key
    )
    if hmac.compare_digest(expected, request.unlock_proof):
        return Recover3Outcome.MATCH
    return Recover3Outcome.MISMATCH


def node_recover3(
    record: VersionRecord, request: Recover3, now: float
) -> tuple[VersionRecord, Recover3Reply | None, Recover3Outcome]:
    """Recover3 on a node: the new record, the reply (on a match) and the outcome.

    A match resets the count to 0 and consumes the attempt; a mismatch consumes it and, at
    the limit, erases the shares (lockout); a stale request changes nothing. When the last
    allowed guess's grace has run out (``lockout_due``) it is too late even for the right
    proof: LOCKED (the store erases the shares then, or on the next access).
    """
    if record.lockout_due(now) or record.shares is None:  # due, or already erased
        raise NodeRefusal(ErrorKind.LOCKED, "this version is locked out", guesses_remaining=0)
    outcome = check_recover3(record, request)
    if outcome is Recover3Outcome.STALE:
        return record, None, outcome
    assert record.attempt is not None and record.shares is not None
    used = replace(record.attempt, used=True)
    if outcome is Recover3Outcome.MISMATCH:
        after = replace(record, attempt=used)
        if after.lockout_due(now):
            after = after.locked_out()
        return after, None, outcome
    reply = Recover3Reply(
        secret_share=record.shares.secret_share,
        encrypted_secret=record.shares.encrypted_secret,
        secret_commitment=record.secret_commitment,
    )
    return replace(record, guess_count=0, attempt=used), reply, outcome
