"""Recovery's client steps after the version is chosen (docs/protocol.md §4), one function per step.

:func:`start_recover2` (blind, after Argon2id) → :func:`finish_recover2` (combine, check the
commitment, verify the evaluations when it does not match) → :func:`finish_recover3` (verify
secret shares, decrypt); :func:`admit_spares` when a Recover3 falls short. The version choice
is :mod:`pakr.proto.choice`; the node's side is :mod:`pakr.proto.counting`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pakr.proto import hpke, kdf, oprf, seal, shamir
from pakr.proto.choice import VersionChoice
from pakr.proto.errors import (
    ClusterUnavailable,
    InvalidPassword,
    MalformedMessage,
    ProtocolError,
)
from pakr.proto.group import Element, Scalar
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.messages import (
    ATTEMPT_ID_LEN,
    NONCE_LEN,
    NodeRef,
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    UserRef,
)
from pakr.proto.policy import VersionPolicy, verify_oprf_key_signature
from pakr.proto.randomness import SYSTEM, Randomness


@dataclass(frozen=True, slots=True)
class RecoveryAttempt:
    """Client state between Recover2 and Recover3 (holds secrets: never logged)."""

    user: UserRef
    choice: VersionChoice
    attempt_id: bytes
    blind: Scalar = field(repr=False)
    blinded_element: Element
    access_key: bytes = field(repr=False)
    encryption_key_seed: bytes = field(repr=False)
    reply_key: HpkePrivateKey = field(repr=False)  # fresh: Recover3 replies are sealed to it

    @property
    def request(self) -> Recover2:
        """The Recover2 request, identical for every node."""
        return Recover2(
            version=self.choice.version,
            attempt_id=self.attempt_id,
            blinded_element=self.blinded_element,
        )


def start_recover2(
    user: UserRef,
    choice: VersionChoice,
    access_key: bytes,
    encryption_key_seed: bytes,
    rng: Randomness = SYSTEM,
) -> RecoveryAttempt:
    """Blind the access key with a fresh blind and attempt id (§4 step 4)."""
    blind, blinded = oprf.blind(access_key, blind=rng.scalar())
    attempt_id = rng.bytes(ATTEMPT_ID_LEN)
    return RecoveryAttempt(
        user=user,
        choice=choice,
        attempt_id=attempt_id,
        blind=blind,
        blinded_element=blinded,
        access_key=access_key,
        encryption_key_seed=encryption_key_seed,
        reply_key=HpkePrivateKey.from_seed(rng.bytes(hpke.SEED_LEN)),
    )


@dataclass(frozen=True, slots=True)
class UnlockedAttempt:
    """The password checked out: the Recover3 request for each node of the group.

    ``set_aside`` names the Recover2 replies left out of the group, with why: each failed
    verification or disagreed with the group that unlocked the attempt (an honest node
    holding the version always agrees with it), so every one is a node that misbehaved.
    """

    attempt: RecoveryAttempt
    policy: VersionPolicy  # signed by vk_v for every node of the group (checked)
    unlock_key: bytes = field(repr=False)
    requests: Mapping[NodeRef, Recover3] = field(repr=False)
    set_aside: Mapping[NodeRef, str] = field(default_factory=dict)


def verify_recover2_reply(
    attempt: RecoveryAttempt, node: NodeRef, reply: Recover2Reply
) -> str | None:
    """Why ``reply`` is invalid, or ``None``: the signed public share and policy, the DLEQ
    proof."""
    why = _policy_problem(attempt, node, reply)
    if why is not None:
        return why
    try:
        if not oprf.verify_proof(
            Element.generator(),
            reply.oprf_public_share,
            [attempt.blinded_element],
            [reply.evaluated_element],
            reply.proof,
        ):
            return "evaluation proof (DLEQ) does not verify"
    except MalformedMessage as exc:  # e.g. an identity intermediate: as invalid as a bad proof
        return f"evaluation does not verify: {exc}"
    if len(reply.nonce) != NONCE_LEN:
        return "nonce has the wrong length"
    return None


def reply_policy(attempt: RecoveryAttempt, reply: Recover2Reply) -> VersionPolicy:
    """The policy a reply claims: its guess limit and the Argon2id parameters in use."""
    return VersionPolicy(max_guesses=reply.max_guesses, argon2=attempt.choice.argon2)


def _policy_problem(attempt: RecoveryAttempt, node: NodeRef, reply: Recover2Reply) -> str | None:
    """Why the reply's ``sig_i`` does not cover its public share and policy, or ``None``."""
    if not verify_oprf_key_signature(
        user=attempt.user,
        node=node,
        version=attempt.choice.version,
        epoch=attempt.choice.epoch,
        public_share=reply.oprf_public_share,
        policy=reply_policy(attempt, reply),
        signature=reply.oprf_key_signature,
        verifying_key=reply.verifying_key,
    ):
        return "signature does not verify for this node's public share and policy"
    return None


class TooFewValid(ProtocolError):
    """Fewer than t consistent, valid evaluations so far.

    ``set_aside`` names the replies that failed verification (each one a misbehaving node);
    ``missing`` is how many more valid replies that agree with the largest valid group would
    complete a group of t. The SDK asks that many further nodes holding the version in the
    same attempt (a Recover2 elsewhere is a new guess there, never a repeat) and calls
    :func:`finish_recover2` again with every reply still in play; with no node left it raises
    this error. Valid replies that only disagree with others are kept, not named: until a
    group of t unlocks the attempt nobody can tell which side lied.
    """

    def __init__(self, set_aside: Mapping[NodeRef, str], reason: str, *, missing: int) -> None:
        self.set_aside = dict(set_aside)
        self.missing = missing
        super().__init__([n.name for n in set_aside], reason)


class PasswordMismatch(InvalidPassword):
    """The password is wrong, decided by a valid group of t; ``set_aside`` names the replies
    that failed verification on the way (the SDK names those nodes even though the attempt
    ended in ``InvalidPassword``, and asks them last afterwards)."""

    def __init__(self, guesses_remaining: int, set_aside: Mapping[NodeRef, str]) -> None:
        self.set_aside = dict(set_aside)
        super().__init__(guesses_remaining)


def _unlock(
    attempt: RecoveryAttempt,
    group: Mapping[NodeRef, Recover2Reply],
    threshold: int,
    set_aside: Mapping[NodeRef, str],
) -> UnlockedAttempt | None:
    """Combine the group's evaluations; the unlocked attempt if the commitment matches.

    A combination that cannot be computed (an identity on the way) is "no match", exactly
    like a wrong result: the caller then verifies every reply one by one.
    """
    shares = {node.index: reply.evaluated_element for node, reply in group.items()}
    try:
        combined = shamir.combine_elements(shares, threshold)
        output = oprf.finalize(attempt.access_key, attempt.blind, combined)
    except MalformedMessage:
        return None
    reference = next(iter(group.values())).commitment
    if not hmac.compare_digest(kdf.commitment(output, attempt.access_key), reference):
        return None
    unlock_key = kdf.unlock_key(output)
    policies = {reply_policy(attempt, reply) for reply in group.values()}
    return UnlockedAttempt(
        attempt=attempt,
        # One registration signs one policy for every node; were they ever to differ, the
        # strictest limit is the one kept.
        policy=min(policies, key=lambda p: p.max_guesses),
        unlock_key=unlock_key,
        requests={
            node: _recover3_request(attempt, unlock_key, node, reply)
            for node, reply in group.items()
        },
        set_aside=dict(set_aside),
    )


def _recover3_request(
    attempt: RecoveryAttempt, unlock_key: bytes, node: NodeRef, reply: Recover2Reply
) -> Recover3:
    reply_key = attempt.reply_key.public.encoded
    proof = kdf.unlock_proof(
        kdf.unlock_tag(unlock_key, node.node_id), reply.nonce, attempt.attempt_id, reply_key
    )
    return Recover3(
        version=attempt.choice.version,
        attempt_id=attempt.attempt_id,
        unlock_proof=proof,
        reply_key=reply_key,
        reply_seed=attempt.reply_key.seed,
    )


def _largest_group(
    replies: Mapping[NodeRef, Recover2Reply],
) -> dict[NodeRef, Recover2Reply]:
    """The replies sharing the most common ``(vk_v, commitment)``; ties broken by the
    lowest node index so the choice never depends on arrival order."""
    groups: dict[tuple[bytes, bytes], dict[NodeRef, Recover2Reply]] = {}
    for node, reply in sorted(replies.items(), key=lambda item: item[0].index):
        groups.setdefault((reply.verifying_key, reply.commitment), {})[node] = reply
    return max(groups.values(), key=len, default={})


_OUTSIDER = "disagrees (vk_v or commitment) with the nodes that unlocked the attempt"


def finish_recover2(
    attempt: RecoveryAttempt,
    replies: Mapping[NodeRef, Recover2Reply],
    *,
    threshold: int,
) -> UnlockedAttempt:
    """Combine ≥ t evaluations and check the password (§4 step 6).

    The replies are grouped by ``(vk_v, commitment)`` and the largest group is combined at
    once. If the result matches the commitment, every evaluation in it was right (a wrong
    Z_i changes the combination, and the commitment is a MAC of the true output), so the
    signatures and DLEQ proofs need no checking: they only matter when something is wrong.
    Otherwise (no match, or no combination at all) every reply is verified
    (:func:`verify_recover2_reply`) and the valid ones regrouped, which tells a wrong
    password from a forged evaluation. Nothing leaves the client between the two, and what
    is accepted is what eager verification accepts.

    At most one valid group can reach t: a valid reply carries a share signed under the
    user's ``vk_v`` and a proof for it, so it is the true evaluation, and the ≤ n - t < t
    liars cannot make a group of t on their own. So a valid group of t that does not match
    means a wrong password: :class:`PasswordMismatch`, an ``InvalidPassword`` (guesses
    remaining = the t-th largest count in the group) naming the invalid replies. Fewer than t
    valid consistent replies: :class:`TooFewValid`, naming the invalid ones and saying how
    many more replies are needed.
    """
    first = _largest_group(replies)
    if len(first) >= threshold:
        outsiders = {n: _OUTSIDER for n in replies if n not in first}
        unlocked = _unlock(attempt, first, threshold, outsiders)
        # The combination proves the evaluations; the policy the client keeps (guess limit)
        # must still be the signed one: t signature checks, far cheaper than the proofs.
        if unlocked is not None and all(
            _policy_problem(attempt, node, reply) is None for node, reply in first.items()
        ):
            return unlocked
    invalid: dict[NodeRef, str] = {}
    valid: dict[NodeRef, Recover2Reply] = {}
    for node, reply in replies.items():
        why = verify_recover2_reply(attempt, node, reply)
        if why is None:
            valid[node] = reply
        else:
            invalid[node] = why
    group = _largest_group(valid)
    if len(group) < threshold:
        missing = threshold - len(group)
        reasons = "; ".join(f"{n.name}: {why}" for n, why in invalid.items())
        raise TooFewValid(
            invalid,
            reasons or f"only {len(group)} consistent valid evaluations; {threshold} needed",
            missing=missing,
        )
    outsiders = dict(invalid)
    outsiders.update({n: _OUTSIDER for n in valid if n not in group})
    # The same group as before (all valid): its combination already failed to match.
    unlocked = (
        None if group.keys() == first.keys() else _unlock(attempt, group, threshold, outsiders)
    )
    if unlocked is None:
        remaining = sorted((r.guesses_remaining for r in group.values()), reverse=True)
        raise PasswordMismatch(remaining[threshold - 1], invalid)
    return unlocked


def admit_spares(
    unlocked: UnlockedAttempt,
    group_reply: Recover2Reply,
    replies: Mapping[NodeRef, Recover2Reply],
) -> tuple[UnlockedAttempt, dict[NodeRef, str]]:
    """Add Recover3 requests for more nodes of an unlocked attempt (a Recover3 fell short).

    Their Recover2 replies cannot be checked by the combination any more, so each must verify
    (signature, DLEQ proof) and belong to the group (``group_reply``'s ``vk_v`` and
    commitment). Returns the extended attempt and the replies set aside, with reasons.
    """
    requests = dict(unlocked.requests)
    set_aside: dict[NodeRef, str] = {}
    for node, reply in replies.items():
        why = verify_recover2_reply(unlocked.attempt, node, reply)
        if why is None and (reply.verifying_key, reply.commitment) != (
            group_reply.verifying_key,
            group_reply.commitment,
        ):
            why = "inconsistent with the other nodes"
        if why is None:
            requests[node] = _recover3_request(unlocked.attempt, unlocked.unlock_key, node, reply)
        else:
            set_aside[node] = why
    return replace(unlocked, requests=requests), set_aside


def verify_recover3_reply(
    unlocked: UnlockedAttempt, node: NodeRef, reply: Recover3Reply
) -> str | None:
    """Why ``reply`` is invalid, or ``None``: the share must match its commitment (§4 step 8).

    :func:`finish_recover3` sets invalid replies aside; the SDK calls this too so it can name
    a node whose forged share was outvoted.
    """
    expected = kdf.secret_commitment(
        unlocked.unlock_key, node.node_id, reply.secret_share.encoded, reply.encrypted_secret
    )
    if not hmac.compare_digest(expected, reply.secret_commitment):
        return "secret share does not match its commitment"
    return None


def finish_recover3(
    unlocked: UnlockedAttempt,
    replies: Mapping[NodeRef, Recover3Reply],
    *,
    threshold: int,
) -> bytes:
    """Verify the secret shares, combine ``s`` and decrypt the secret (§4 step 8)."""
    attempt = unlocked.attempt
    invalid: list[NodeRef] = []
    groups: dict[bytes, dict[int, Scalar]] = {}
    for node, reply in replies.items():
        if verify_recover3_reply(unlocked, node, reply) is not None:
            invalid.append(node)
            continue
        groups.setdefault(reply.encrypted_secret, {})[node.index] = reply.secret_share
    if not groups or max(len(g) for g in groups.values()) < threshold:
        if invalid:
            raise ProtocolError(
                [n.name for n in invalid], "secret share does not match its commitment"
            )
        raise ClusterUnavailable({}, f"fewer than {threshold} nodes released their share")
    ciphertext, shares = max(groups.items(), key=lambda item: len(item[1]))
    s = shamir.reconstruct(shares, threshold)
    key = kdf.encryption_key(attempt.encryption_key_seed, s.encoded)
    ad = kdf.secret_ad(attempt.user.tenant, attempt.user.user_id, attempt.choice.version)
    try:
        return seal.decrypt_secret(key, ciphertext, ad)
    except MalformedMessage as exc:
        raise ProtocolError(
            [n.name for n in replies], "the encrypted secret failed authentication"
        ) from exc
