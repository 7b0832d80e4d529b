"""Which version a recovery uses (docs/protocol.md §4 step 2), decided from Recover1's answers.

:func:`settled` says when the answers so far decide the version, :func:`choose_version`
decides it (committed first, then held; the nodes to ask, in order), and the counting rules
live here once: :func:`lockout_is_certain` for ``LockedOut`` and :func:`guesses_left` for what
a wrong password reports. Pure functions over the nodes' answers; no I/O.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from pakr.proto.errors import (
    ClusterUnavailable,
    LockedOut,
    NotRegistered,
    ProtocolError,
)
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import (
    NodeRef,
    Recover2Reply,
    UserRef,
    UserStatus,
    VersionInfo,
)


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
