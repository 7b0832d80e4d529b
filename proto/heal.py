"""Filling missing copies after a successful recovery (docs/protocol.md §4b): the decisions, pure.

With r < n a node that missed a registration keeps the older version (or none) forever, and
the secret lives on fewer nodes than the operator thinks. After a recovery the client holds
the secret and the password, so it can re-register them (a fresh version, two-phase) on
every node. That is safe only as a compare-and-swap on the recovered version: a password
changed on another device in the meantime must never be written back. Hence:

* :func:`fill_wanted` — only when a node that *answered* Recover1 holds no usable copy of
  the recovered version (a node that is merely down is no reason: zero fills then), and
  nothing newer than the recovered version was seen anywhere;
* :func:`newer_seen` — checked again on the fill's own Register1 answers; any newer epoch or
  version aborts the fill, which is never retried. The nodes' ``expected`` check and epoch
  rule (Register2) then refuse it wherever a newer registration lands in between.

At most one fill per recovery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pakr.proto.messages import NodeRef, UserStatus


def _holds(status: UserStatus, version: bytes) -> bool:
    return any(
        info is not None and info.version == version and not info.locked
        for info in (status.committed, status.pending)
    )


def newer_seen(statuses: Iterable[UserStatus], version: bytes, epoch: int) -> bool:
    """Whether any node reports something newer than ``(version, epoch)``: a higher epoch
    (version or tombstone), or another version at the same epoch."""
    for status in statuses:
        if status.tombstone_epoch >= epoch:
            return True
        for info in (status.committed, status.pending):
            if info is None:
                continue
            if info.epoch > epoch or (info.epoch == epoch and info.version != version):
                return True
    return False


def missing_copies(answers: Mapping[NodeRef, UserStatus], version: bytes) -> tuple[NodeRef, ...]:
    """The nodes that answered but hold no usable copy of ``version`` (none, older, locked)."""
    return tuple(
        sorted(
            (node for node, status in answers.items() if not _holds(status, version)),
            key=lambda node: node.index,
        )
    )


def fill_wanted(answers: Mapping[NodeRef, UserStatus], version: bytes, epoch: int) -> bool:
    """After a recovery of ``(version, epoch)``: re-register the secret on every node?"""
    return bool(missing_copies(answers, version)) and not newer_seen(
        answers.values(), version, epoch
    )
