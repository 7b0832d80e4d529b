"""Issue 12's pure rules: the certain lockout count and the epoch-jump bound (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pakr.proto.choice import choose_version, lockout_is_certain
from pakr.proto.errors import (
    ClusterUnavailable,
    InvalidPassword,
    LockedOut,
    NodeRefusal,
    NotRegistered,
)
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import NodeRef, UserStatus, VersionInfo
from pakr.proto.register import EPOCH_JUMP_LIMIT, check_epoch_jump, registration_epoch

MAX_U64 = 2**64 - 1
PARAMS = Argon2Params(memory_kib=19 * 1024, iterations=2, parallelism=1)
NODES = tuple(NodeRef(bytes([i]) * 32, i) for i in range(1, 6))
VERSION = b"v" * 16


def _status(*, usable: bool = True, held: bool = True) -> UserStatus:
    if not held:
        return UserStatus()
    info = VersionInfo(VERSION, 1, PARAMS, 10 if usable else 0, locked=not usable)
    return UserStatus(committed=info)


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (7, 4), (5, 5)])
def test_lockout_needs_more_than_n_minus_t(n: int, t: int) -> None:
    for unable in range(n + 1):
        assert lockout_is_certain(unable, threshold=t, node_count=n) is (unable > n - t)


def test_lockout_is_an_invalid_password_with_no_guesses() -> None:
    error = LockedOut()
    assert isinstance(error, InvalidPassword) and error.guesses_remaining == 0


def test_one_false_locked_with_missing_answers_is_unavailable() -> None:
    """The review's attack: one "locked", two honest answers missing (3-of-5)."""
    answers = {NODES[0]: _status(usable=False), NODES[1]: _status(), NODES[2]: _status()}
    with pytest.raises(ClusterUnavailable):
        choose_version(answers, {}, threshold=3, node_count=5)
    answers[NODES[3]] = _status()
    assert len(choose_version(answers, {}, threshold=3, node_count=5).nodes) == 3


@given(st.lists(st.sampled_from(["usable", "locked", "missing", "silent"]), min_size=5, max_size=5))
def test_choose_version_locked_out_only_when_certain(kinds: list[str]) -> None:
    answers = {
        node: _status(usable=kind == "usable", held=kind != "missing")
        for node, kind in zip(NODES, kinds, strict=True)
        if kind != "silent"
    }
    usable = kinds.count("usable")
    unable = kinds.count("locked") + kinds.count("missing")
    if usable == 0 and kinds.count("locked") == 0:
        return  # no node holds the version: NotRegistered / unavailable, not this rule
    try:
        choice = choose_version(answers, {}, threshold=3, node_count=5)
    except LockedOut:
        assert unable > 2
    except ClusterUnavailable:
        assert unable <= 2 and usable < 3
    except NotRegistered:  # more than n - t answered without any version
        assert kinds.count("missing") > 2
    else:
        assert usable >= 3 and len(choice.nodes) == usable


# ----------------------------------------------------------------- epoch jumps


def _statuses(epochs: list[int]) -> list[UserStatus]:
    return [UserStatus(tombstone_epoch=e) for e in epochs]


def test_one_node_reporting_the_maximum_epoch_is_not_adopted() -> None:
    assert registration_epoch(_statuses([MAX_U64, 4, 4, 3, 4]), tolerate=2) == 5
    assert registration_epoch(_statuses([MAX_U64, 4, 4]), tolerate=1) == 5


@given(
    honest=st.lists(st.integers(0, 10_000), min_size=3, max_size=5),
    liars=st.lists(st.integers(0, MAX_U64), max_size=2),
)
def test_epoch_beats_every_honest_node_and_ignores_liars(
    honest: list[int], liars: list[int]
) -> None:
    """With ≥ f + 1 honest answers within J of each other, the epoch is above every honest
    epoch (so honest nodes accept it) and at most J + 1 above the highest honest one."""
    f = max(1, len(liars))
    if len(honest) < f + 1:
        return
    epoch = registration_epoch(_statuses(honest + liars), tolerate=f)
    assert max(honest) < epoch <= max(honest) + EPOCH_JUMP_LIMIT + 1


def test_node_refuses_a_jump_past_the_limit() -> None:
    check_epoch_jump(7, 7 + EPOCH_JUMP_LIMIT)
    with pytest.raises(NodeRefusal):
        check_epoch_jump(7, 8 + EPOCH_JUMP_LIMIT)


def test_distrust_memory_puts_set_aside_nodes_last_until_it_expires() -> None:
    """Issue 12 finding 3: a node that claims one guess left is asked first, until this client
    sets it aside; then it is asked last, whatever it claims, for the memory's lifetime."""
    from pakr._distrust import Distrust

    now = [0.0]
    memory = Distrust(ttl=60.0, clock=lambda: now[0])
    liar = NODES[0]
    answers = {node: _status() for node in NODES}
    answers[liar] = UserStatus(committed=VersionInfo(VERSION, 1, PARAMS, 1))  # "1 guess left"
    first = choose_version(answers, {}, threshold=3, node_count=5)
    assert first.nodes[0] == liar
    memory.remember([liar])
    later = choose_version(answers, {}, threshold=3, node_count=5, distrusted=memory.current())
    assert later.nodes[-1] == liar
    now[0] = 61.0
    assert memory.current() == frozenset()
