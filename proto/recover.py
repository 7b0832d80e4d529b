"""Recovery (docs/protocol.md §4), one function per step, client side then node side.

Client: :func:`settled` / :func:`choose_version` (after Recover1) → Argon2id
(``kdf.stretch_password``) → :func:`start_recover2` → :func:`finish_recover2` (combine, check
the commitment, verify the evaluations when it does not match) → :func:`finish_recover3`
(verify secret shares, decrypt); :func:`admit_spares` when a Recover3 falls short.

Node: :func:`admit_recover2` is the reference model of the durable guess count that stores
implement as one conditional UPDATE; :func:`node_recover2` evaluates; :func:`check_recover3`
and :func:`node_recover3` release the share against the unlock proof or keep the guess
counted.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pakr.proto import hpke, kdf, oprf, seal, shamir
from pakr.proto.errors import (
    ClusterUnavailable,
    ErrorKind,
    InvalidPassword,
    LockedOut,
    MalformedMessage,
    NodeRefusal,
    NotRegistered,
    ProtocolError,
)
from pakr.proto.group import Element, Scalar
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import (
    ATTEMPT_ID_LEN,
    NONCE_LEN,
    NodeRef,
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    UserRef,
    UserStatus,
    VersionInfo,
)
from pakr.proto.policy import VersionPolicy, verify_oprf_key_signature
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.records import Attempt, VersionRecord

# --------------------------------------------------------------------------- client side


@dataclass(frozen=True, slots=True)
class VersionChoice:
    """The version recovery will use and the nodes that can serve it."""

    version: bytes
    epoch: int
    argon2: Argon2Params
    nodes: tuple[NodeRef, ...]  # hold the version with the agreed parameters and can guess
    pending_nodes: tuple[NodeRef, ...]  # hold it only as pending: roll forward on success
    suspects: tuple[NodeRef, ...] = ()  # reported the version with other Argon2 parameters
    max_guesses: int = 0  # the version's own guess limit, as most holders report it (0: none)
    cannot_serve: tuple[NodeRef, ...] = ()  # answered: locked, no guesses, or without it
    moved_on: tuple[NodeRef, ...] = ()  # of those, hold a newer version: no lockout evidence
    guesses: tuple[tuple[NodeRef, int], ...] = ()  # usable nodes' Recover1 guesses remaining


def settled(answers: Mapping[NodeRef, UserStatus], *, threshold: int) -> bool:
    """Whether the Recover1 answers so far decide the version whatever the others say.

    True once t nodes report the same version *committed*, usable (not locked, guesses left),
    with the same Argon2id parameters and no newer tombstone. No other answer can change
    :func:`choose_version`'s result then: a node has one committed version and t > n/2, so no
    other version can be committed on t nodes, and at most n - t < t nodes are left to
    report other parameters or a newer tombstone. The client starts Argon2id at once and lets
    the slower nodes answer meanwhile.
    """
    agreeing: Counter[tuple[bytes, int, Argon2Params]] = Counter()
    for status in answers.values():
        info = status.committed
        if info is not None and info.usable and status.tombstone_epoch < info.epoch:
            agreeing[(info.version, info.epoch, info.argon2)] += 1
    return any(count >= threshold for count in agreeing.values())


def cannot_serve(status: UserStatus, version: bytes, epoch: int) -> bool:
    """Whether a node's answer says it can never evaluate a guess for ``(version, epoch)``:
    it holds the version locked or out of guesses, or does not hold it at all."""
    for info in (status.committed, status.pending):
        if info is not None and (info.version, info.epoch) == (version, epoch) and info.usable:
            return False
    return True


def holds_newer(status: UserStatus, epoch: int) -> bool:
    """Whether a node's answer holds a version newer than ``epoch`` (committed or pending).

    Such a node cannot serve the older version, but not because it is locked: the user's
    registration moved on there (another device's password change, a fill, a re-register),
    so it is never evidence for ``LockedOut`` ("the secret is erased"), only for a conflict.
    """
    return any(
        info is not None and info.epoch > epoch for info in (status.committed, status.pending)
    )


def lockout_is_certain(unable: int, *, threshold: int, node_count: int) -> bool:
    """The one rule for ``LockedOut`` (issue 12): certain only when more than n - t distinct
    nodes answered that they cannot serve the version (locked, out of guesses, or without
    it), counting every answer that arrived before the deadline, so fewer than t nodes could
    ever serve it. One node, or any n - t, claiming "locked" is never enough: a lying
    node and slow honest ones would otherwise turn a live secret into a lost one. Anything
    short of this is ``ClusterUnavailable``.
    """
    return unable > node_count - threshold


def _preference(
    user: UserRef | None,
    node: NodeRef,
    info: VersionInfo,
    pending: bool,
    distrusted: frozenset[NodeRef],
) -> tuple[bool, bool, int, bytes]:
    """Sort key of the nodes recovery asks first (see :func:`choose_version`)."""
    if user is None:
        order = bytes([node.index])
    else:
        key = b"\x00".join((user.tenant.encode(), user.user_id.encode(), node.node_id))
        order = hashlib.blake2b(key, digest_size=8).digest()
    return (node in distrusted, pending, info.guesses_remaining, order)


def choose_version(
    answers: Mapping[NodeRef, UserStatus],
    failures: Mapping[NodeRef, str],
    *,
    threshold: int,
    node_count: int,
    user: UserRef | None = None,
    distrusted: frozenset[NodeRef] = frozenset(),
) -> VersionChoice:
    """Recover1 → which version to recover, committed first (§4 step 2).

    The highest-epoch version committed on ≥ t nodes wins; failing that, the highest-epoch
    version held (committed or pending) by ≥ t nodes: a minority cannot steer recovery to an
    abandoned pending version, and after a failed password change the old password works.
    The nodes used must agree on the Argon2id parameters, which must lie within the client's
    floor and ceiling (the parameter attack).

    ``nodes`` comes in the order recovery asks them (it asks only t, more on failure):
    nodes holding the version committed before pending-only ones, then the fewest guesses
    left, then an order fixed per ``user`` (spreading users over the nodes); nodes this
    client set aside recently (``distrusted``) come last whatever they claim, so a node that
    lies about its guess count to be asked first costs at most the attempt it lied in (and
    not even that: its reply is replaced by a spare node's within the attempt). Asking the same
    nodes every time makes the policy's ``max_guesses`` the number of wrong passwords an
    honest client gets, as if every node counted every guess.
    """
    t = threshold
    committed: Counter[tuple[bytes, int]] = Counter()
    held: Counter[tuple[bytes, int]] = Counter()
    for status in answers.values():
        keys = set()
        for info in (status.committed, status.pending):
            if info is not None:
                keys.add((info.version, info.epoch))
        if status.committed is not None:
            committed[(status.committed.version, status.committed.epoch)] += 1
        held.update(keys)

    def best(counter: Counter[tuple[bytes, int]]) -> tuple[bytes, int] | None:
        eligible = [key for key, count in counter.items() if count >= t]
        return max(eligible, key=lambda key: key[1], default=None)

    candidate = best(committed) or best(held)
    if candidate is None:
        without = sum(1 for s in answers.values() if s.committed is None and s.pending is None)
        if without > node_count - t:
            raise NotRegistered()
        known = max(held, key=lambda key: key[1], default=None)  # held by fewer than t
        if known is not None:
            unable_count = sum(1 for s in answers.values() if cannot_serve(s, *known))
            if lockout_is_certain(unable_count, threshold=t, node_count=node_count):
                raise LockedOut()
        reasons = {node.name: why for node, why in failures.items()}
        raise ClusterUnavailable(
            reasons, "cluster unavailable: no version is held by enough reachable nodes"
        )
    version, epoch = candidate
    newer_tombstones = sum(1 for s in answers.values() if s.tombstone_epoch > epoch)
    if newer_tombstones >= t:
        raise NotRegistered("the secret for this user was deleted")

    holders: list[tuple[NodeRef, VersionInfo, bool]] = []
    for node, status in answers.items():
        for info, is_pending in ((status.committed, False), (status.pending, True)):
            if info is not None and (info.version, info.epoch) == candidate:
                holders.append((node, info, is_pending))
    by_params: Counter[Argon2Params] = Counter(info.argon2 for _, info, _ in holders)
    params, agreeing = by_params.most_common(1)[0]
    suspects = tuple(node for node, info, _ in holders if info.argon2 != params)
    if agreeing < t:
        raise ProtocolError(
            [node.name for node, _, _ in holders],
            "nodes disagree on the Argon2id parameters of the version",
        )
    params.check()  # WeakParameters: a floor/ceiling violation, whoever reports it
    ranked = tuple(
        (node, info.guesses_remaining)
        for node, info, pending in sorted(
            holders, key=lambda h: _preference(user, h[0], h[1], h[2], distrusted)
        )
        if info.argon2 == params and info.usable
    )
    usable = tuple(node for node, _ in ranked)
    unable = tuple(node for node, status in answers.items() if cannot_serve(status, *candidate))
    moved_on = tuple(node for node in unable if holds_newer(answers[node], epoch))
    if len(usable) < t:
        if lockout_is_certain(len(unable) - len(moved_on), threshold=t, node_count=node_count):
            raise LockedOut()
        reasons = {node.name: why for node, why in failures.items()}
        reasons.update({node.name: "cannot serve the version" for node in unable})
        raise ClusterUnavailable(
            reasons, f"cluster unavailable: {len(usable)} node(s) can serve the version, {t} needed"
        )
    pending = tuple(node for node, info, p in holders if p and info.argon2 == params)
    limits = Counter(i.max_guesses for _, i, _ in holders if i.argon2 == params and i.max_guesses)
    return VersionChoice(
        version=version,
        epoch=epoch,
        argon2=params,
        nodes=usable,
        pending_nodes=pending,
        suspects=suspects,
        max_guesses=limits.most_common(1)[0][0] if limits else 0,
        cannot_serve=unable,
        moved_on=moved_on,
        guesses=ranked,
    )


def guesses_left(
    choice: VersionChoice, replies: Mapping[NodeRef, Recover2Reply], *, threshold: int
) -> int:
    """How many more wrong guesses recovery can absorb after a wrong one: the t-th largest
    count over every node that can serve the version, the asked nodes' counts taken from
    their Recover2 replies (this guess included), the others' from Recover1.

    The group asked is the nodes with the fewest guesses left, so its own t-th count would
    report a node that missed a login's reset (and still carries older wrong guesses) as
    the user's whole budget: an honest user would read "locked out" after fewer than
    max_guesses wrong guesses since their last login. The figure is advice to the user;
    the nodes' own counts are what bound an attacker."""
    counts = dict(choice.guesses)
    counts.update({node: reply.guesses_remaining for node, reply in replies.items()})
    ranked = sorted(counts.values(), reverse=True)
    return ranked[threshold - 1] if len(ranked) >= threshold else 0


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


# --------------------------------------------------------------------------- node side


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
    if record.lockout_due(now):
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
