"""Property 4 (docs/protocol.md §8): each honest node spends at most ``max_guesses`` per version
between successes, under concurrency, retries and crashes; no request sequence (new pending
versions, replayed commits or Recover3 messages) resets a count without the password.

Already shown elsewhere and not repeated here (``tests/node/store_contract.py``): the
store's single conditional UPDATE under 100 concurrent guesses
(``test_concurrent_guesses_never_exceed_the_limit``), a retried attempt being free at the
store (``test_retried_attempt_is_free_and_same_nonce``), a new pending version keeping the
committed count (``test_new_pending_keeps_committed_and_its_count``); crashes at every
step (``tests/faults/test_crash_campaign.py``). This module adds the live versions
against node processes over the real wire, the replay sequences, and a check of the
documented guess bound ⌊(n - f)·m/(t - f)⌋ against the pure node steps.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import pakr
from pakr._transport import GrpcTransport
from pakr.coordinator.localcluster import LocalCluster
from pakr.node.config import RateLimits
from pakr.proto import kdf
from pakr.proto.choice import VersionChoice, choose_version
from pakr.proto.counting import Admission, admit_recover2, count_guess
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.group import Element, Scalar
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.messages import NodeRef, Recover2, Recover3, Register3, UserRef
from pakr.proto.records import ShareMaterial, VersionRecord
from pakr.proto.recover import finish_recover2, start_recover2
from pakr.proto.register import new_version, prepare_registration
from pakr.proto.tokens import TenantKey, issue_token
from tests.node.node_helpers import ANY_REPLY_KEY
from tests.security.sec_live import async_client_for, client_for, guess_counts

# Per-user limits the storms never hit: this module counts guesses, not rate limits.
LIMITS = RateLimits(user_rate=1000.0, user_burst=1000)
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.cluster(nodes=3, threshold=2, rate_limits=LIMITS),
]

# ------------------------------------------------------------------------ the guess bound


def _honest_record(max_guesses: int) -> VersionRecord:
    return VersionRecord(
        version=bytes(16),
        epoch=1,
        argon2=DEV_ARGON2,
        max_guesses=max_guesses,
        guess_count=0,
        shares=ShareMaterial(Scalar.random(), Scalar.random(), bytes(32), bytes(145)),
        oprf_public_share=Element.generator(),
        oprf_key_signature=bytes(64),
        verifying_key=bytes(32),
        commitment=bytes(32),
        secret_commitment=bytes(32),
        created_at=0.0,
    )


def _attack(n: int, t: int, f: int, m: int) -> int:
    """Guesses an attacker gets when f nodes answer without limit: each guess needs t
    evaluations, t - f of them from honest nodes, which admit through the real
    ``admit_recover2``/``count_guess``. Greedy (most budget left first) is optimal."""
    honest = [_honest_record(m) for _ in range(n - f)]
    guesses = 0
    while True:
        order = sorted(range(len(honest)), key=lambda i: honest[i].guess_count)[: t - f]
        request = Recover2(bytes(16), os.urandom(16), Element.base_mult(Scalar.random()))
        if len(order) < t - f or any(
            admit_recover2(honest[i], request, 0.0) is not Admission.COUNT for i in order
        ):
            return guesses
        for i in order:
            honest[i] = count_guess(honest[i], request, os.urandom(16), 0.0)
        guesses += 1


@pytest.mark.parametrize(
    ("n", "t", "f", "m"),
    [(3, 2, 0, 10), (5, 3, 0, 10), (5, 3, 1, 10), (5, 3, 2, 10), (4, 3, 0, 7), (7, 4, 2, 5)],
)
def test_guess_bound_matches_the_documented_formula(n: int, t: int, f: int, m: int) -> None:
    bound = (n - f) * m // (t - f)
    assert _attack(n, t, f, m) == bound
    # And no strategy can beat it: every guess spends t - f honest evaluations of (n - f)·m.
    assert bound * (t - f) <= (n - f) * m < (bound + 1) * (t - f)


# ------------------------------------------------------------------------ live cluster


def test_concurrent_wrong_guesses_never_exceed_the_limit(cluster: LocalCluster) -> None:
    user, limit = "concurrent", 4
    with client_for(cluster) as c:
        c.register(user, "right", b"secret", max_guesses=limit)

    async def storm() -> list[BaseException | bytes]:
        # Eight clients (one client runs one user's recoveries one at a time), all at once.
        clients = [async_client_for(cluster) for _ in range(8)]
        try:
            return await asyncio.gather(
                *(c.recover(user, f"wrong {i}") for i, c in enumerate(clients)),
                return_exceptions=True,
            )
        finally:
            for c in clients:
                await c.close()

    # Waves of 8 concurrent wrong guesses (twice the limit) until the limit is spent; no node
    # may ever count past it.
    for _ in range(10):
        outcomes = asyncio.run(storm())
        assert not any(isinstance(o, bytes) for o in outcomes)
        assert all(isinstance(o, pakr.PakrError) for o in outcomes), outcomes
        counts = guess_counts(cluster, user)
        assert all(c is not None and c <= limit for c in counts.values()), counts
        if set(counts.values()) == {limit}:
            break
    assert set(counts.values()) == {limit}, counts
    with client_for(cluster) as c, pytest.raises(pakr.InvalidPassword) as info:
        c.recover(user, "right")  # … so even the right password gets no evaluation now
    assert info.value.guesses_remaining == 0
    assert guess_counts(cluster, user) == counts


@dataclass
class Wire:
    """Direct transports to every node, with fresh tokens per call (the pure client steps)."""

    cluster: LocalCluster
    user: UserRef
    key: TenantKey
    transports: dict[int, GrpcTransport]

    def token(self, index: int) -> str:
        node_id = self.cluster.node(index).node_id
        return issue_token(self.key, user_id=self.user.user_id, audience=node_id)

    def ref(self, index: int) -> NodeRef:
        return self.transports[index].node


@pytest.fixture
def wire(cluster: LocalCluster) -> Iterator[Wire]:
    manifest = cluster.manifest()
    transports = {
        n.index: GrpcTransport(
            n.ref, n.address, tls_cert_pem=n.tls_cert_pem, hpke_public_key=n.hpke_public_key
        )
        for n in manifest.nodes
    }
    yield Wire(
        cluster,
        UserRef(cluster.tenant, "replayed-" + os.urandom(4).hex()),
        TenantKey.load(cluster.tenant_key_path),
        transports,
    )


async def _choice(w: Wire) -> VersionChoice:
    answers = {
        w.ref(i): await t.recover1(w.user, w.token(i), timeout=5) for i, t in w.transports.items()
    }
    return choose_version(answers, {}, threshold=2, node_count=3)


async def _guess(w: Wire, password: str, choice: VersionChoice) -> tuple[object, dict]:  # type: ignore[type-arg]
    access, seed = kdf.stretch_password(
        password.encode(), w.user.tenant, w.user.user_id, choice.version, choice.argon2
    )
    attempt = start_recover2(w.user, choice, access, seed)
    replies = {
        w.ref(i): await t.recover2(w.user, w.token(i), attempt.request, timeout=5)
        for i, t in w.transports.items()
    }
    return attempt, replies


def test_retries_replays_and_new_versions_never_reset_a_count(wire: Wire) -> None:
    w = wire
    with client_for(w.cluster) as c:
        c.register(w.user.user_id, "right", b"secret", max_guesses=5)

    async def scenario() -> None:
        try:
            choice = await _choice(w)
            # A right guess, done by hand: keep its Recover3 messages to replay later.
            attempt, replies = await _guess(w, "right", choice)
            unlocked = finish_recover2(attempt, replies, threshold=2)  # type: ignore[arg-type]
            captured: dict[int, Recover3] = {}
            for i, t in w.transports.items():
                request = unlocked.requests[w.ref(i)]
                await t.recover3(w.user, w.token(i), request, timeout=5)
                captured[i] = request
            assert set(guess_counts(w.cluster, w.user.user_id).values()) == {0}

            # A wrong guess: counted once, even when the same Recover2 is retried.
            attempt, _ = await _guess(w, "wrong", choice)
            for i, t in w.transports.items():
                await t.recover2(w.user, w.token(i), attempt.request, timeout=5)  # type: ignore[attr-defined]
            assert set(guess_counts(w.cluster, w.user.user_id).values()) == {1}

            # Replayed Recover3 of the earlier success, and an unprompted one: nothing.
            for i, t in w.transports.items():
                for request in (
                    captured[i],
                    Recover3(choice.version, attempt.attempt_id, os.urandom(32), ANY_REPLY_KEY),  # type: ignore[attr-defined]
                ):
                    with pytest.raises(NodeRefusal) as info:
                        await t.recover3(w.user, w.token(i), request, timeout=5)
                    assert info.value.kind in (
                        ErrorKind.STALE_ATTEMPT,
                        ErrorKind.BAD_UNLOCK_TAG,
                    )
            assert set(guess_counts(w.cluster, w.user.user_id).values()) == {1}

            # Replayed commit of the committed version: a no-op, the count stays.
            for i, t in w.transports.items():
                await t.register3(w.user, w.token(i), Register3(choice.version), timeout=5)
            assert set(guess_counts(w.cluster, w.user.user_id).values()) == {1}

            # A new pending version (someone starting a registration) leaves it too, and so
            # does trying to commit a version that is not pending.
            version = new_version()
            plan = prepare_registration(
                user=w.user,
                nodes=[w.ref(i) for i in w.transports],
                threshold=2,
                version=version,
                epoch=choice.epoch + 1,
                expected={w.ref(i).node_id: choice.version for i in w.transports},
                access_key=os.urandom(32),
                encryption_key_seed=os.urandom(32),
                secret=b"x",
                argon2=DEV_ARGON2,
            )
            for i, t in w.transports.items():
                await t.register2(w.user, w.token(i), plan.requests[w.ref(i).node_id], timeout=5)
                with pytest.raises(NodeRefusal):
                    await t.register3(w.user, w.token(i), Register3(os.urandom(16)), timeout=5)
            assert set(guess_counts(w.cluster, w.user.user_id).values()) == {1}
            assert set(guess_counts(w.cluster, w.user.user_id, "pending").values()) == {0}
        finally:
            for t in w.transports.values():
                await t.close()

    asyncio.run(scenario())
    with client_for(w.cluster) as c:  # the password still in force resets it, as it should,
        assert c.recover(w.user.user_id, "right") == b"secret"
    # at the t nodes that released a share (Recover3) and, proven with the same password, at
    # the other holder (ResetGuesses, protocol.md §4a): nothing but the password resets a count
    assert sorted(guess_counts(w.cluster, w.user.user_id).values()) == [0, 0, 0]
