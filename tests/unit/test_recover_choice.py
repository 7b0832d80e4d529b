"""Which nodes a recovery asks, when Recover1 is settled, and lazy evaluation checks.

The client asks t nodes for evaluations (docs/protocol.md §4 as implemented; docs/protocol.md
"Where this differs"): ``choose_version`` orders them, ``settled`` lets it start Argon2id at
the t-th agreeing Recover1 answer, and ``finish_recover2`` verifies signatures and DLEQ proofs
only when the combined evaluation does not match the commitment.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pakr.proto import recover as recover_mod
from pakr.proto.choice import choose_version, settled
from pakr.proto.errors import InvalidPassword, ProtocolError
from pakr.proto.group import Element
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.messages import NodeRef, UserRef, UserStatus, VersionInfo
from pakr.proto.recover import TooFewValid, admit_spares
from tests.unit.test_protocol_roundtrip import USER, Cluster

OTHER_PARAMS = Argon2Params(memory_kib=32 * 1024, iterations=3, parallelism=1)


def _nodes(n: int) -> list[NodeRef]:
    return [NodeRef(node_id=os.urandom(16), index=i + 1) for i in range(n)]


def _info(version: bytes, epoch: int = 1, *, left: int = 10, **kw: object) -> VersionInfo:
    return VersionInfo(
        version=version, epoch=epoch, argon2=DEV_ARGON2, guesses_remaining=left, **kw
    )  # type: ignore[arg-type]


# --------------------------------------------------------------------------- node order


def test_nodes_come_committed_first_then_fewest_guesses_left() -> None:
    nodes = _nodes(5)
    v = os.urandom(16)
    answers = {
        nodes[0]: UserStatus(committed=_info(v, left=9)),
        nodes[1]: UserStatus(committed=_info(v, left=4)),
        nodes[2]: UserStatus(committed=_info(v, left=7)),
        nodes[3]: UserStatus(pending=_info(v, left=1)),  # holds it only as pending: last
        nodes[4]: UserStatus(committed=_info(v, left=0)),  # no guesses left: not usable
    }
    choice = choose_version(answers, {}, threshold=3, node_count=5, user=USER)
    assert choice.nodes == (nodes[1], nodes[2], nodes[0], nodes[3])
    assert choice.pending_nodes == (nodes[3],)


def test_equal_counts_give_an_order_fixed_per_user_and_spread_over_users() -> None:
    nodes = _nodes(5)
    v = os.urandom(16)
    answers = {node: UserStatus(committed=_info(v)) for node in nodes}

    def order(user_id: str) -> tuple[NodeRef, ...]:
        user = UserRef(USER.tenant, user_id)
        return choose_version(answers, {}, threshold=3, node_count=5, user=user).nodes

    assert order("alice") == order("alice")  # the same nodes every time: m guesses mean m
    firsts = {frozenset(order(f"user-{i}")[:3]) for i in range(200)}
    assert len(firsts) >= 8  # users spread over the C(5,3) = 10 possible sets


# --------------------------------------------------------------------------- settled


def test_settled_needs_t_usable_committed_answers_with_the_same_params() -> None:
    nodes = _nodes(5)
    v = os.urandom(16)
    ok = UserStatus(committed=_info(v))
    assert not settled({nodes[0]: ok, nodes[1]: ok}, threshold=3)
    assert settled({nodes[0]: ok, nodes[1]: ok, nodes[2]: ok}, threshold=3)
    pending = UserStatus(pending=_info(v))
    assert not settled({nodes[0]: ok, nodes[1]: ok, nodes[2]: pending}, threshold=3)
    locked = UserStatus(committed=_info(v, locked=True))
    assert not settled({nodes[0]: ok, nodes[1]: ok, nodes[2]: locked}, threshold=3)
    other = UserStatus(committed=replace(_info(v), argon2=OTHER_PARAMS))
    assert not settled({nodes[0]: ok, nodes[1]: ok, nodes[2]: other}, threshold=3)
    tomb = UserStatus(committed=_info(v, epoch=2), tombstone_epoch=3)  # inconsistent: wait
    assert not settled({nodes[0]: ok, nodes[1]: ok, nodes[2]: tomb}, threshold=3)


def _status(draw: st.DrawFn, versions: list[bytes]) -> UserStatus:
    def info() -> VersionInfo | None:
        if not draw(st.booleans()):
            return None
        return VersionInfo(
            version=draw(st.sampled_from(versions)),
            epoch=draw(st.integers(1, 6)),
            argon2=draw(st.sampled_from([DEV_ARGON2, OTHER_PARAMS])),
            guesses_remaining=draw(st.integers(0, 3)),
            locked=draw(st.booleans()),
        )

    return UserStatus(committed=info(), pending=info(), tombstone_epoch=draw(st.integers(0, 7)))


@st.composite
def _settled_case(
    draw: st.DrawFn,
) -> tuple[int, int, dict[NodeRef, UserStatus], set[NodeRef]]:
    n = draw(st.integers(3, 7))
    t = n // 2 + 1
    nodes = _nodes(n)
    versions = [os.urandom(16) for _ in range(3)]
    agreed = VersionInfo(
        version=versions[0], epoch=draw(st.integers(1, 6)), argon2=DEV_ARGON2, guesses_remaining=2
    )
    early = set(nodes[:t])
    answers = {
        node: UserStatus(committed=agreed, tombstone_epoch=draw(st.integers(0, agreed.epoch - 1)))
        for node in early
    }
    for node in nodes[t:]:
        if draw(st.booleans()):  # answers late, with anything at all
            answers[node] = _status(draw, versions)
    return n, t, answers, early


@settings(max_examples=300, deadline=None)
@given(_settled_case())
def test_once_settled_no_later_answer_changes_the_choice(
    case: tuple[int, int, dict[NodeRef, UserStatus], set[NodeRef]],
) -> None:
    """t nodes agreeing on a committed version decide it, whatever the other n - t say."""
    n, t, answers, early = case
    first = {node: answers[node] for node in early}
    assert settled(first, threshold=t)
    decided = choose_version(first, {}, threshold=t, node_count=n)
    full = choose_version(answers, {}, threshold=t, node_count=n)
    assert (full.version, full.epoch, full.argon2) == (
        decided.version,
        decided.epoch,
        decided.argon2,
    )


# --------------------------------------------------------------------------- lazy checks


def test_a_matching_combination_needs_no_signature_or_proof_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Cluster(5, 3)
    cluster.register(b"pw", b"secret")

    def forbidden(*args: object) -> None:
        raise AssertionError("verified although the combination matched")

    monkeypatch.setattr(recover_mod, "verify_recover2_reply", forbidden)
    assert cluster.recover(b"pw", use=cluster.nodes[:3]) == b"secret"


def test_a_mismatch_is_checked_to_tell_a_wrong_password_from_a_forgery() -> None:
    cluster = Cluster(5, 3)
    cluster.register(b"pw", b"secret", max_guesses=5)
    with pytest.raises(InvalidPassword) as wrong:  # every reply verifies: the password
        cluster.recover(b"not pw", use=cluster.nodes[:3])
    assert wrong.value.guesses_remaining == 4
    liar = cluster.nodes[1].ref

    def forge(replies):  # type: ignore[no-untyped-def]
        r = replies[liar]
        return {
            **replies,
            liar: replace(r, evaluated_element=r.evaluated_element + Element.generator()),
        }

    with pytest.raises(TooFewValid) as forged:  # a ProtocolError naming the forger
        cluster.recover(b"pw", use=cluster.nodes[:3], tamper=forge)
    assert isinstance(forged.value, ProtocolError)
    assert list(forged.value.set_aside) == [liar]
    assert "DLEQ" in forged.value.set_aside[liar]


def test_spares_admitted_only_when_valid_and_of_the_same_registration() -> None:
    cluster = Cluster(5, 3)
    cluster.register(b"pw", b"secret")
    from pakr.proto import kdf
    from pakr.proto.recover import finish_recover2, start_recover2

    answers = {n.ref: n.status() for n in cluster.nodes}
    choice = choose_version(answers, {}, threshold=3, node_count=5)
    access, seed = kdf.stretch_password(
        b"pw", USER.tenant, USER.user_id, choice.version, choice.argon2
    )
    attempt = start_recover2(USER, choice, access, seed)
    replies = {n.ref: n.recover2(attempt.request) for n in cluster.nodes}
    first = {ref: replies[ref] for ref in list(replies)[:3]}
    unlocked = finish_recover2(attempt, first, threshold=3)
    spare, forged = cluster.nodes[3].ref, cluster.nodes[4].ref
    bad = replace(
        replies[forged], evaluated_element=replies[forged].evaluated_element + Element.generator()
    )
    extended, aside = admit_spares(
        unlocked, next(iter(first.values())), {spare: replies[spare], forged: bad}
    )
    assert set(extended.requests) == set(first) | {spare}
    assert list(aside) == [forged]
    other = replace(replies[spare], commitment=os.urandom(32))
    _, aside = admit_spares(unlocked, next(iter(first.values())), {spare: other})
    assert spare in aside
