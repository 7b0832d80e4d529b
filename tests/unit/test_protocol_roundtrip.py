"""Whole register → recover round trips over the pure protocol steps, no network.

``SimNode`` plays a node with nothing but the node-side step functions and a dict, so these
tests pin the protocol itself: t of n recovery, wrong passwords, tampered replies, a node
lying about its public key, a failed password change and the pending-version roll-forward.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from pakr.proto import kdf
from pakr.proto.choice import choose_version
from pakr.proto.counting import (
    Admission,
    Recover3Outcome,
    admit_recover2,
    count_guess,
    node_recover2,
    node_recover3,
)
from pakr.proto.delete import delete_epoch, node_delete
from pakr.proto.errors import (
    ConfigError,
    ErrorKind,
    InvalidPassword,
    NodeRefusal,
    NotRegistered,
    ProtocolError,
    WeakParameters,
)
from pakr.proto.group import Element, Scalar
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.messages import NodeRef, Recover2, Recover3, Register2, UserRef, UserStatus
from pakr.proto.randomness import DeterministicRandomness
from pakr.proto.records import UserRecord
from pakr.proto.recover import UnlockedAttempt, finish_recover2, finish_recover3, start_recover2
from pakr.proto.register import (
    new_version,
    node_register2,
    node_register3,
    prepare_registration,
    registration_epoch,
)

USER = UserRef("acme", "alice@example.com")


class SimNode:
    """A node made of the pure node-side steps and one in-memory record."""

    def __init__(self, index: int) -> None:
        self.ref = NodeRef(node_id=os.urandom(16), index=index)
        self.user: UserRecord | None = None
        self.now = 1_000.0

    def status(self) -> UserStatus:
        return self.user.status() if self.user else UserStatus()

    def register2(self, req: Register2) -> None:
        new = node_register2(self.user, req, user=USER, node=self.ref, now=self.now)
        if new is not None:
            self.user = new

    def register3(self, version: bytes) -> None:
        new = node_register3(self.user, version)
        if new is not None:
            self.user = new

    def recover2(self, req: Recover2):  # type: ignore[no-untyped-def]
        assert self.user is not None
        record = self.user.version(req.version)
        assert record is not None
        admission = admit_recover2(record, req, self.now)
        if admission is Admission.COUNT:
            record = count_guess(record, req, os.urandom(16), self.now)
            self.user = self.user.with_version(record)
        elif admission is not Admission.REPLAY:
            raise NodeRefusal(kind=None, message=admission.value)  # type: ignore[arg-type]
        assert record.attempt is not None
        return node_recover2(record, req, nonce=record.attempt.nonce)

    def recover3(self, req: Recover3):  # type: ignore[no-untyped-def]
        assert self.user is not None
        record = self.user.version(req.version)
        assert record is not None
        after, reply, outcome = node_recover3(record, req, self.now)
        self.user = self.user.with_version(after)
        return reply, outcome


class Cluster:
    def __init__(self, n: int, t: int) -> None:
        self.nodes = [SimNode(i + 1) for i in range(n)]
        self.t = t
        self.last_unlocked: UnlockedAttempt | None = None

    def register(
        self,
        password: bytes,
        secret: bytes,
        *,
        max_guesses: int = 10,
        commit_to: int | None = None,
        params: Argon2Params = DEV_ARGON2,
    ) -> bytes:
        statuses = {n.ref.node_id: n.status() for n in self.nodes}
        epoch = registration_epoch(statuses.values())
        version = new_version()
        access, seed = kdf.stretch_password(password, USER.tenant, USER.user_id, version, params)
        expected = {
            nid: (s.committed.version if s.committed else None) for nid, s in statuses.items()
        }
        plan = prepare_registration(
            user=USER,
            nodes=[n.ref for n in self.nodes],
            threshold=self.t,
            version=version,
            epoch=epoch,
            expected=expected,
            access_key=access,
            encryption_key_seed=seed,
            secret=secret,
            argon2=params,
            max_guesses=max_guesses,
        )
        for node in self.nodes:
            node.register2(plan.requests[node.ref.node_id])
        for node in self.nodes[: len(self.nodes) if commit_to is None else commit_to]:
            node.register3(version)
        return version

    def recover(self, password: bytes, *, use: list[SimNode] | None = None, tamper=None) -> bytes:  # type: ignore[no-untyped-def]
        nodes = use if use is not None else self.nodes
        answers = {n.ref: n.status() for n in nodes}
        choice = choose_version(answers, {}, threshold=self.t, node_count=len(self.nodes))
        access, seed = kdf.stretch_password(
            password, USER.tenant, USER.user_id, choice.version, choice.argon2
        )
        attempt = start_recover2(USER, choice, access, seed)
        by_ref = {n.ref: n for n in nodes}
        replies = {ref: by_ref[ref].recover2(attempt.request) for ref in choice.nodes}
        if tamper is not None:
            replies = tamper(replies)
        unlocked = finish_recover2(attempt, replies, threshold=self.t)
        self.last_unlocked = unlocked
        shares = {}
        for ref, req in unlocked.requests.items():
            reply, outcome = by_ref[ref].recover3(req)
            assert outcome is Recover3Outcome.MATCH
            shares[ref] = reply
        secret = finish_recover3(unlocked, shares, threshold=self.t)
        for ref in choice.pending_nodes:
            by_ref[ref].register3(choice.version)
        return secret


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (4, 3)])
def test_round_trip_any_t_nodes(n: int, t: int) -> None:
    cluster = Cluster(n, t)
    cluster.register(b"correct horse", b"k" * 32)
    assert cluster.recover(b"correct horse") == b"k" * 32
    assert cluster.recover(b"correct horse", use=cluster.nodes[-t:]) == b"k" * 32


@pytest.mark.parametrize("size", [0, 1, 128])
def test_secret_sizes(size: int) -> None:
    cluster = Cluster(3, 2)
    secret = os.urandom(size)
    cluster.register(b"pw", secret)
    assert cluster.recover(b"pw") == secret


def test_secret_of_129_bytes_rejected_before_any_work() -> None:
    cluster = Cluster(3, 2)
    with pytest.raises(ConfigError, match="at most 128"):
        cluster.register(b"pw", bytes(129))
    assert all(n.user is None for n in cluster.nodes)


def test_wrong_password_counts_and_reports_guesses() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"right", b"secret", max_guesses=3)
    with pytest.raises(InvalidPassword) as info:
        cluster.recover(b"wrong")
    assert info.value.guesses_remaining == 2
    assert all(
        n.user and n.user.committed and n.user.committed.guess_count == 1 for n in cluster.nodes
    )
    assert cluster.recover(b"right") == b"secret"
    assert all(
        n.user and n.user.committed and n.user.committed.guess_count == 0 for n in cluster.nodes
    )


def test_lockout_after_max_guesses_even_with_right_password() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"right", b"secret", max_guesses=2)
    for expected in (1, 0):
        with pytest.raises(InvalidPassword) as info:
            cluster.recover(b"wrong")
        assert info.value.guesses_remaining == expected
    for node in cluster.nodes:
        node.now += 601  # the last failed attempt lapses: lockout is due
    with pytest.raises(InvalidPassword) as info:
        cluster.recover(b"right")
    assert info.value.guesses_remaining == 0


def test_recover3_for_an_erased_version_is_locked_not_stale() -> None:
    """A Recover3 arriving after the node erased the version's shares answers LOCKED (the
    SDK counts it as "cannot serve"), not STALE_ATTEMPT (which reads as a concurrent login)."""
    cluster = Cluster(3, 2)
    version = cluster.register(b"right", b"secret")
    node = cluster.nodes[0]
    assert node.user is not None
    record = node.user.version(version)
    assert record is not None
    node.user = node.user.with_version(record.locked_out())
    request = Recover3(version=version, attempt_id=bytes(16), unlock_proof=bytes(32))
    with pytest.raises(NodeRefusal) as refused:
        node.recover3(request)
    assert refused.value.kind is ErrorKind.LOCKED


def test_tampered_evaluation_is_named_and_honest_nodes_still_recover() -> None:
    cluster = Cluster(5, 3)
    cluster.register(b"pw", b"secret")
    bad = cluster.nodes[0].ref

    def tamper(replies):  # type: ignore[no-untyped-def]
        r = replies[bad]
        forged = r.evaluated_element + Element.generator()
        return {**replies, bad: replace(r, evaluated_element=forged)}

    assert cluster.recover(b"pw", tamper=tamper) == b"secret"
    with pytest.raises(ProtocolError) as info:
        cluster.recover(b"pw", use=cluster.nodes[:3], tamper=tamper)
    assert bad.name in info.value.nodes


def test_node_lying_about_its_public_key_is_caught() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"pw", b"secret")
    liar = cluster.nodes[1].ref
    fake_k = Scalar.random()

    def lie_about_key(replies):  # type: ignore[no-untyped-def]
        r = replies[liar]
        return {**replies, liar: replace(r, oprf_public_share=Element.base_mult(fake_k))}

    def lie_and_forge(replies):  # type: ignore[no-untyped-def]
        r = lie_about_key(replies)[liar]
        return {
            **replies,
            liar: replace(r, evaluated_element=r.evaluated_element + Element.generator()),
        }

    # A public share of the liar's choosing with a correct evaluation: the combination
    # matches, but the signature the client checks for the policy covers K_i too, so the liar
    # is set aside (the SDK then asks another node); the honest pair still recovers.
    with pytest.raises(ProtocolError) as info:
        cluster.recover(b"pw", use=cluster.nodes[:2], tamper=lie_about_key)
    assert info.value.nodes == [liar.name]
    assert cluster.recover(b"pw", use=[cluster.nodes[0], cluster.nodes[2]]) == b"secret"
    # With a forged evaluation the combination fails, and the registration signature over
    # the public share names the liar.
    with pytest.raises(ProtocolError) as info:
        cluster.recover(b"pw", use=cluster.nodes[:2], tamper=lie_and_forge)
    assert liar.name in info.value.nodes
    assert "signature" in str(info.value)


def test_a_node_cannot_report_its_own_policy() -> None:
    """The guess limit and Argon2id parameters are signed by vk_v with K_i: a node reporting
    another limit is named, even when its evaluation and the password are right."""
    cluster = Cluster(3, 2)
    cluster.register(b"pw", b"secret", max_guesses=5)
    assert cluster.recover(b"pw") == b"secret"
    assert cluster.last_unlocked is not None
    assert cluster.last_unlocked.policy.max_guesses == 5
    assert cluster.last_unlocked.policy.argon2 == DEV_ARGON2
    liar = cluster.nodes[1].ref

    def inflate(replies):  # type: ignore[no-untyped-def]
        return {**replies, liar: replace(replies[liar], max_guesses=100)}

    with pytest.raises(ProtocolError) as info:
        cluster.recover(b"pw", use=cluster.nodes[:2], tamper=inflate)
    assert info.value.nodes == [liar.name] and "policy" in str(info.value)


def test_nodes_agreeing_on_unsigned_argon2_parameters_are_caught() -> None:
    """Every node reports parameters the registration did not sign: no signature covers
    them, so the client refuses instead of trusting the nodes' word."""
    cluster = Cluster(3, 2)
    cluster.register(b"pw", b"secret")
    other = Argon2Params(memory_kib=19456, iterations=3, parallelism=1)
    for node in cluster.nodes:
        assert node.user is not None and node.user.committed is not None
        node.user = node.user.with_version(replace(node.user.committed, argon2=other))
    with pytest.raises(ProtocolError, match="policy"):
        cluster.recover(b"pw")


@pytest.mark.parametrize("commits", [0, 1])
def test_interrupted_password_change_keeps_old_password(commits: int) -> None:
    cluster = Cluster(4, 3)
    cluster.register(b"old", b"secret")
    cluster.register(b"new", b"secret2", commit_to=commits)  # crash after `commits` commits
    assert cluster.recover(b"old") == b"secret"  # old still committed on >= t nodes


def test_password_change_split_two_two_recovers_new_and_rolls_forward() -> None:
    # Juicebox's stranding case (n=4, t=3, split 2/2): here the new version is held by all 4
    # (2 committed + 2 pending), so it is recoverable and the pending nodes roll forward.
    cluster = Cluster(4, 3)
    cluster.register(b"old", b"secret")
    version = cluster.register(b"new", b"secret2", commit_to=2)
    assert cluster.recover(b"new") == b"secret2"
    for node in cluster.nodes:
        assert node.user is not None and node.user.committed is not None
        assert node.user.committed.version == version


def test_pending_version_rolls_forward() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"old", b"one")
    version = cluster.register(b"new", b"two", commit_to=1)
    # new: committed on node 1, pending on 2 and 3; old: committed on 2 and 3 (≥ t) → old wins
    assert cluster.recover(b"old") == b"one"
    cluster.nodes[2].register3(version)  # now new is committed on 2 of 3 nodes
    assert cluster.recover(b"new") == b"two"
    # node 2 held it only as pending and is rolled forward by the successful recovery
    assert cluster.nodes[1].user is not None and cluster.nodes[1].user.committed is not None
    assert cluster.nodes[1].user.committed.version == version


def test_epoch_and_conflict_rules() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"pw", b"s")
    node = cluster.nodes[0]
    statuses = [n.status() for n in cluster.nodes]
    assert registration_epoch(statuses) == 2
    # A replayed Register2 with a stale epoch is refused.
    with pytest.raises(NodeRefusal, match="epoch"):
        node_register2(
            node.user, _some_register2(cluster, epoch=1), user=USER, node=node.ref, now=0
        )


def _some_register2(cluster: Cluster, *, epoch: int) -> Register2:
    version = new_version()
    access, seed = kdf.stretch_password(b"x", USER.tenant, USER.user_id, version, DEV_ARGON2)
    plan = prepare_registration(
        user=USER,
        nodes=[n.ref for n in cluster.nodes],
        threshold=cluster.t,
        version=version,
        epoch=epoch,
        expected={},
        access_key=access,
        encryption_key_seed=seed,
        secret=b"",
        argon2=DEV_ARGON2,
    )
    return plan.requests[cluster.nodes[0].ref.node_id]


def test_delete_then_not_registered_and_stale_node_cannot_resurrect() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"pw", b"s")
    epoch = delete_epoch([n.status() for n in cluster.nodes])
    for node in cluster.nodes[:2]:  # node 3 misses the delete
        node.user = node_delete(node.user, epoch) or node.user
    with pytest.raises(NotRegistered):
        cluster.recover(b"pw")


def test_weak_parameters_refused_before_any_guess() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"pw", b"s")
    weak = Argon2Params(memory_kib=8, iterations=1, parallelism=1)
    answers = {}
    for n in cluster.nodes:
        status = n.status()
        assert status.committed is not None
        answers[n.ref] = replace(status, committed=replace(status.committed, argon2=weak))
    with pytest.raises(WeakParameters):
        choose_version(answers, {}, threshold=2, node_count=3)


def test_retried_recover2_costs_no_second_guess() -> None:
    cluster = Cluster(3, 2)
    cluster.register(b"pw", b"s")
    node = cluster.nodes[0]
    assert node.user is not None and node.user.committed is not None
    version = node.user.committed.version
    blinded = Element.base_mult(Scalar.random())
    req = Recover2(version=version, attempt_id=os.urandom(16), blinded_element=blinded)
    first = node.recover2(req)
    second = node.recover2(req)
    assert first.nonce == second.nonce
    assert node.user.committed.guess_count == 1


def test_deterministic_randomness_reproduces_registration() -> None:
    cluster = Cluster(3, 2)
    args = dict(
        user=USER,
        nodes=[n.ref for n in cluster.nodes],
        threshold=2,
        version=bytes(16),
        epoch=1,
        expected={},
        access_key=bytes(32),
        encryption_key_seed=bytes(32),
        secret=b"s",
        argon2=DEV_ARGON2,
    )
    a = prepare_registration(**args, rng=DeterministicRandomness(b"seed"))  # type: ignore[arg-type]
    b = prepare_registration(**args, rng=DeterministicRandomness(b"seed"))  # type: ignore[arg-type]
    assert a.requests == b.requests
