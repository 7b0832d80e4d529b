"""The pure heal steps (protocol.md §4a, §4b): reset nonces and targets, fill decisions, and
the guess limit as a property of the version."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pakr._operations.register import current_policy
from pakr.proto.choice import choose_version
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.heal import fill_wanted, missing_copies, newer_seen
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.messages import NodeRef, UserRef, UserStatus, VersionInfo
from pakr.proto.reset import NONCE_TTL_SECONDS, issue_nonce, open_nonce, reset_targets

KEY = bytes(range(32))
USER = UserRef("acme", "alice")
NOW = 1_700_000_000.0
NODES = [NodeRef(bytes([i]) * 16, i) for i in range(1, 6)]
V1, V2 = b"\x01" * 16, b"\x02" * 16


def info(version: bytes = V1, epoch: int = 1, left: int = 10, **kw: object) -> VersionInfo:
    return VersionInfo(version, epoch, DEV_ARGON2, left, max_guesses=10, **kw)  # type: ignore[arg-type]


def test_nonce_opens_for_its_user_until_it_expires() -> None:
    nonce = issue_nonce(KEY, USER, NOW)
    assert open_nonce(KEY, USER, nonce, NOW + NONCE_TTL_SECONDS - 1) == int(NOW) + 60
    for key, user, now in (
        (KEY, USER, NOW + NONCE_TTL_SECONDS),  # expired
        (KEY, UserRef("acme", "bob"), NOW),  # another user
        (os.urandom(32), USER, NOW),  # another node (or a forged nonce)
    ):
        with pytest.raises(NodeRefusal) as refused:
            open_nonce(key, user, nonce, now)
        assert refused.value.kind is ErrorKind.STALE_ATTEMPT


@given(st.integers(0, 39), st.integers(1, 255))
def test_any_changed_byte_is_refused(index: int, flip: int) -> None:
    nonce = bytearray(issue_nonce(KEY, USER, NOW))
    nonce[index] ^= flip
    with pytest.raises(NodeRefusal):
        open_nonce(KEY, USER, bytes(nonce), NOW)


@given(st.binary(max_size=64))
def test_random_bytes_never_open(data: bytes) -> None:
    with pytest.raises(NodeRefusal):
        open_nonce(KEY, USER, data, NOW)


def test_reset_targets_are_the_spent_unlocked_holders_outside_the_release() -> None:
    nonce = issue_nonce(KEY, USER, NOW)
    answers = {
        NODES[0]: UserStatus(committed=info(left=7), reset_nonce=nonce),  # releases (Recover3)
        NODES[1]: UserStatus(committed=info(left=7), reset_nonce=nonce),  # spent: reset
        NODES[2]: UserStatus(committed=info(left=10), reset_nonce=nonce),  # full, not asked
        NODES[3]: UserStatus(committed=info(left=10), reset_nonce=nonce),  # full, but asked
        NODES[4]: UserStatus(committed=info(left=0, locked=True), reset_nonce=nonce),
    }
    targets = reset_targets(answers, version=V1, releasing={NODES[0]}, evaluated={NODES[3]})
    assert targets == (NODES[1], NODES[3])
    no_nonce = {NODES[1]: UserStatus(committed=info(left=3))}
    assert reset_targets(no_nonce, version=V1, releasing=set(), evaluated=set()) == ()
    other = {NODES[1]: UserStatus(committed=info(V2, 2, left=3), reset_nonce=nonce)}
    assert reset_targets(other, version=V1, releasing=set(), evaluated=set()) == ()


def test_fill_only_for_answering_nodes_without_a_copy_and_nothing_newer() -> None:
    full = {n: UserStatus(committed=info()) for n in NODES[:4]}  # NODES[4] is down
    assert not fill_wanted(full, V1, 1)
    stale = {**full, NODES[4]: UserStatus(committed=info(V2, 0))}
    assert missing_copies(stale, V1) == (NODES[4],)
    assert fill_wanted(stale, V1, 1)
    locked = {**full, NODES[4]: UserStatus(committed=info(left=0, locked=True))}
    assert fill_wanted(locked, V1, 1)
    for newer in (
        UserStatus(committed=info(), pending=info(V2, 2)),  # a registration in flight
        UserStatus(committed=info(V2, 2)),  # a committed newer version
        UserStatus(committed=info(V2, 1)),  # another version at the same epoch
        UserStatus(tombstone_epoch=2),  # deleted since
    ):
        assert newer_seen([newer], V1, 1)
        assert not fill_wanted({**stale, NODES[0]: newer}, V1, 1)


def test_the_limit_is_the_versions_own_never_a_count() -> None:
    """Repro 2 in the pure core: a node that missed the re-registration (max 3) still
    reports the old version's 10 remaining; the new version's limit is 3."""
    answers = {
        n: UserStatus(committed=VersionInfo(V2, 2, DEV_ARGON2, 3, max_guesses=3)) for n in NODES[:4]
    }
    answers[NODES[4]] = UserStatus(committed=info(V1, 1, left=10))
    choice = choose_version(answers, {}, threshold=3, node_count=5)
    assert (choice.version, choice.max_guesses) == (V2, 3)
    assert current_policy(answers) == 3
