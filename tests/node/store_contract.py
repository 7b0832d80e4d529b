"""The storage contract every node Store backend must pass, unchanged.

A backend's test module subclasses :class:`StoreContract` and overrides two fixtures:
``store_factory`` (an async callable ``(data_key: bytes) -> Store``, migrated, reusing one
database across calls within a test so reopening is observable) and nothing else. The tests
drive the stores with the pure client steps of ``pakr.proto`` and check the behaviour
against the reference model (``admit_recover2``, ``node_recover3``, …).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from pakr.node.store.base import SCHEMA_VERSION, Store, StoreError
from pakr.proto import kdf
from pakr.proto.counting import Recover3Outcome, node_recover2
from pakr.proto.errors import ErrorKind, InvalidPassword, NodeRefusal
from pakr.proto.messages import LOCKOUT_GRACE_SECONDS, Recover3, ResetGuesses, UserRef
from pakr.proto.recover import finish_recover3
from tests.node.node_helpers import (
    OTHER_USER,
    USER,
    attempt,
    make_registration,
    unlock,
    wrong_recover2,
)

StoreFactory = Callable[[bytes], Awaitable[Store]]
NOW = 1_700_000_000.0
PEER = "ipv4:127.0.0.1:5555"


class StoreContract:
    """Subclass and provide ``store_factory``."""

    @pytest.fixture
    def store_factory(self) -> StoreFactory:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture
    def data_key(self) -> bytes:
        return os.urandom(32)

    @pytest.fixture
    async def store(self, store_factory: StoreFactory, data_key: bytes) -> AsyncIterator[Store]:
        store = await store_factory(data_key)
        try:
            yield store
        finally:
            await store.close()

    # ------------------------------------------------------------------ schema

    async def test_migrate_is_idempotent(self, store: Store) -> None:
        assert await store.migrate() == SCHEMA_VERSION
        assert await store.migrate() == SCHEMA_VERSION

    async def test_wrong_data_key_is_refused(
        self, store_factory: StoreFactory, store: Store
    ) -> None:
        with pytest.raises(StoreError, match="data key"):
            other = await store_factory(os.urandom(32))
            await other.close()

    # ------------------------------------------------------------------ register

    async def test_unknown_user_is_none(self, store: Store) -> None:
        assert await store.get_user(USER) is None

    async def test_register_commit_round_trip(self, store: Store) -> None:
        reg = make_registration()
        assert await store.register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
        user = await store.get_user(USER)
        assert user is not None and user.committed is None and user.pending is not None
        pending = user.pending
        assert pending.version == reg.version and pending.guess_count == 0
        assert pending.shares is not None
        assert pending.shares.oprf_key_share == reg.request.oprf_key_share
        assert pending.shares.secret_share == reg.request.secret_share
        assert pending.shares.unlock_tag == reg.request.unlock_tag
        assert pending.shares.encrypted_secret == reg.request.encrypted_secret
        # an identical retry is a no-op success
        assert not await store.register_pending(
            USER, reg.request, node=reg.node, now=NOW + 1, peer=PEER
        )
        assert await store.commit(USER, reg.version, now=NOW, peer=PEER)
        assert not await store.commit(USER, reg.version, now=NOW, peer=PEER)
        user = await store.get_user(USER)
        assert user is not None and user.pending is None and user.committed is not None
        assert user.committed.version == reg.version
        assert await store.get_user(OTHER_USER) is None

    async def test_register2_conflicts_change_nothing(self, store: Store) -> None:
        first = make_registration(epoch=5)
        await store.register_pending(USER, first.request, node=first.node, now=NOW, peer=PEER)
        await store.commit(USER, first.version, now=NOW, peer=PEER)
        before = await store.get_user(USER)
        stale = make_registration(epoch=5, expected=first.version)
        with pytest.raises(NodeRefusal) as info:
            await store.register_pending(USER, stale.request, node=stale.node, now=NOW, peer=PEER)
        assert info.value.kind is ErrorKind.CONFLICT
        wrong_expected = make_registration(epoch=6, expected=None)
        with pytest.raises(NodeRefusal) as info:
            await store.register_pending(
                USER, wrong_expected.request, node=wrong_expected.node, now=NOW, peer=PEER
            )
        assert info.value.kind is ErrorKind.CONFLICT
        with pytest.raises(NodeRefusal) as info:
            await store.commit(USER, os.urandom(16), now=NOW, peer=PEER)
        assert info.value.kind is ErrorKind.CONFLICT
        assert await store.get_user(USER) == before

    async def test_new_pending_keeps_committed_and_its_count(self, store: Store) -> None:
        reg = make_registration(max_guesses=5)
        await store.register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
        await store.commit(USER, reg.version, now=NOW, peer=PEER)
        for _ in range(3):
            await store.count_guess(
                USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
            )
        newer = make_registration(epoch=2, expected=reg.version)
        await store.register_pending(USER, newer.request, node=newer.node, now=NOW, peer=PEER)
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None and user.pending is not None
        assert user.committed.guess_count == 3
        # committing the new version drops the old one; the new one starts at its own count
        await store.commit(USER, newer.version, now=NOW, peer=PEER)
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None
        assert user.committed.version == newer.version and user.pending is None

    # ------------------------------------------------------------------ recover

    async def _registered(self, store: Store, max_guesses: int = 10):  # type: ignore[no-untyped-def]
        reg = make_registration(max_guesses=max_guesses)
        await store.register_pending(USER, reg.request, node=reg.node, now=NOW, peer=PEER)
        await store.commit(USER, reg.version, now=NOW, peer=PEER)
        return reg

    async def test_full_recovery_resets_the_count(self, store: Store) -> None:
        reg = await self._registered(store)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        att = attempt(reg)
        nonce = os.urandom(16)
        result = await store.count_guess(USER, att.request, nonce=nonce, now=NOW, peer=PEER)
        assert result.counted and result.record.guess_count == 2
        assert result.record.attempt is not None and result.record.attempt.nonce == nonce
        reply = node_recover2(result.record, att.request, nonce=nonce)
        unlocked = unlock(att, reply)
        request = unlocked.requests[reg.node]
        released = await store.release(USER, request, now=NOW, peer=PEER)
        assert released.outcome is Recover3Outcome.MATCH and released.reply is not None
        assert finish_recover3(unlocked, {reg.node: released.reply}, threshold=1) == reg.secret
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None
        assert user.committed.guess_count == 0
        # the same Recover3 again is stale and releases nothing
        again = await store.release(USER, request, now=NOW, peer=PEER)
        assert again.outcome is Recover3Outcome.STALE and again.reply is None

    async def test_retried_attempt_is_free_and_same_nonce(self, store: Store) -> None:
        reg = await self._registered(store)
        request = wrong_recover2(reg)
        first = await store.count_guess(USER, request, nonce=os.urandom(16), now=NOW, peer=PEER)
        second = await store.count_guess(USER, request, nonce=os.urandom(16), now=NOW, peer=PEER)
        assert first.counted and not second.counted
        assert first.record.attempt == second.record.attempt
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None
        assert user.committed.guess_count == 1

    async def test_limit_then_no_guesses(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=3)
        for _ in range(3):
            await store.count_guess(
                USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
            )
        with pytest.raises(NodeRefusal) as info:
            await store.count_guess(
                USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
            )
        assert info.value.kind is ErrorKind.NO_GUESSES

    async def test_unknown_version_not_registered(self, store: Store) -> None:
        reg = await self._registered(store)
        other = make_registration()
        for call in (
            store.count_guess(USER, wrong_recover2(other), nonce=bytes(16), now=NOW, peer=PEER),
            store.release(USER, Recover3(other.version, bytes(16), bytes(32)), now=NOW, peer=PEER),
        ):
            with pytest.raises(NodeRefusal) as info:
                await call
            assert info.value.kind is ErrorKind.NOT_REGISTERED
        assert reg.version != other.version

    async def test_mismatch_keeps_count_then_last_one_locks(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=2)
        for expected_locked in (False, True):
            att = attempt(reg, right=False)
            nonce = os.urandom(16)
            result = await store.count_guess(USER, att.request, nonce=nonce, now=NOW, peer=PEER)
            request = Recover3(reg.version, att.attempt_id, os.urandom(32))
            released = await store.release(USER, request, now=NOW, peer=PEER)
            assert released.outcome is Recover3Outcome.MISMATCH
            assert released.locked is expected_locked
            assert result.counted
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None
        assert user.committed.locked and user.committed.shares is None
        with pytest.raises(NodeRefusal) as info:
            await store.count_guess(USER, attempt(reg).request, nonce=bytes(16), now=NOW, peer=PEER)
        assert info.value.kind is ErrorKind.LOCKED

    async def test_last_guess_right_still_recovers(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=2)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        att = attempt(reg)
        result = await store.count_guess(
            USER, att.request, nonce=os.urandom(16), now=NOW, peer=PEER
        )
        assert result.record.guesses_remaining == 0
        assert result.record.attempt is not None
        reply = node_recover2(result.record, att.request, nonce=result.record.attempt.nonce)
        unlocked = unlock(att, reply)
        released = await store.release(USER, unlocked.requests[reg.node], now=NOW, peer=PEER)
        assert released.outcome is Recover3Outcome.MATCH

    async def test_lockout_after_grace_is_lazy(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=1)
        att = attempt(reg, right=False)
        result = await store.count_guess(
            USER, att.request, nonce=os.urandom(16), now=NOW, peer=PEER
        )
        reply = node_recover2(result.record, att.request, nonce=os.urandom(16))
        with pytest.raises(InvalidPassword):
            unlock(att, reply)
        assert not await store.lock_version(USER, reg.version, now=NOW + 1, peer=PEER)
        later = NOW + LOCKOUT_GRACE_SECONDS + 1
        assert await store.lock_version(USER, reg.version, now=later, peer=PEER)
        assert not await store.lock_version(USER, reg.version, now=later, peer=PEER)
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None and user.committed.locked

    async def test_recover3_after_the_grace_is_too_late(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=1)
        att = attempt(reg)
        result = await store.count_guess(
            USER, att.request, nonce=os.urandom(16), now=NOW, peer=PEER
        )
        assert result.record.attempt is not None
        reply = node_recover2(result.record, att.request, nonce=result.record.attempt.nonce)
        request = unlock(att, reply).requests[reg.node]  # the right password, but too late
        later = NOW + LOCKOUT_GRACE_SECONDS + 1
        with pytest.raises(NodeRefusal) as info:
            await store.release(USER, request, now=later, peer=PEER)
        assert info.value.kind is ErrorKind.LOCKED
        # release() itself erased the shares (no later call needed to see it)
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None and user.committed.locked
        rows = await store.read_audit(USER.tenant, USER.user_id, after_id=0, limit=100)
        assert [r.op for r in rows][-1] == "locked"
        with pytest.raises(NodeRefusal) as info:  # and it stays locked
            await store.count_guess(USER, att.request, nonce=os.urandom(16), now=later, peer=PEER)
        assert info.value.kind is ErrorKind.LOCKED
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None and user.committed.locked

    async def test_recover2_locks_lazily_when_due(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=1)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        later = NOW + LOCKOUT_GRACE_SECONDS + 1
        with pytest.raises(NodeRefusal) as info:
            await store.count_guess(
                USER, wrong_recover2(reg), nonce=os.urandom(16), now=later, peer=PEER
            )
        assert info.value.kind is ErrorKind.LOCKED
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None and user.committed.locked

    async def test_concurrent_guesses_never_exceed_the_limit(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=10)

        async def one() -> str:
            try:
                res = await store.count_guess(
                    USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
                )
            except NodeRefusal as exc:
                return exc.kind.name
            return "counted" if res.counted else "replay"

        outcomes = await asyncio.gather(*(one() for _ in range(200)))
        assert outcomes.count("counted") == 10
        assert outcomes.count("NO_GUESSES") == 190
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None
        assert user.committed.guess_count == 10

    async def test_state_survives_reopen(
        self, store_factory: StoreFactory, store: Store, data_key: bytes
    ) -> None:
        reg = await self._registered(store)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        before = await store.get_user(USER)
        await store.close()
        reopened = await store_factory(data_key)
        try:
            assert await reopened.get_user(USER) == before
        finally:
            await reopened.close()

    # ------------------------------------------------------------------ delete and audit

    async def test_delete_tombstones(self, store: Store) -> None:
        reg = await self._registered(store)
        with pytest.raises(NodeRefusal) as info:
            await store.delete(USER, 1, now=NOW, peer=PEER)  # not above the version's epoch
        assert info.value.kind is ErrorKind.CONFLICT
        assert await store.delete(USER, 2, now=NOW, peer=PEER)
        assert not await store.delete(USER, 2, now=NOW, peer=PEER)
        user = await store.get_user(USER)
        assert user is not None and user.committed is None and user.pending is None
        assert user.tombstone_epoch == 2
        with pytest.raises(NodeRefusal) as info:
            await store.count_guess(USER, wrong_recover2(reg), nonce=bytes(16), now=NOW, peer=PEER)
        assert info.value.kind is ErrorKind.NOT_REGISTERED

    async def test_audit_log(self, store: Store) -> None:
        reg = await self._registered(store)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        other = make_registration(user=OTHER_USER)
        await store.register_pending(
            OTHER_USER, other.request, node=other.node, now=NOW + 5, peer=PEER
        )
        rows = await store.read_audit("acme", None, after_id=0, limit=100)
        assert [(r.user_id, r.op, r.outcome) for r in rows] == [
            (USER.user_id, "registered", "pending"),
            (USER.user_id, "registered", "committed"),
            (USER.user_id, "guess_used", "remaining=9"),
            (OTHER_USER.user_id, "registered", "pending"),
        ]
        assert all(r.peer == PEER for r in rows)
        mine = await store.read_audit("acme", USER.user_id, after_id=rows[0].id, limit=1)
        assert [r.op for r in mine] == ["registered"] and mine[0].id == rows[1].id
        assert await store.read_audit("other-tenant", None, after_id=0, limit=100) == []
        assert await store.prune_audit(NOW + 1) == 3
        assert len(await store.read_audit("acme", None, after_id=0, limit=100)) == 1

    # ------------------------------------------------------------------ single-use tokens

    async def test_token_claimed_once_until_it_expires(
        self, store_factory: StoreFactory, data_key: bytes, store: Store
    ) -> None:
        assert await store.claim_token("acme:jti-1", NOW + 300, now=NOW)
        assert not await store.claim_token("acme:jti-1", NOW + 300, now=NOW + 1)
        assert await store.claim_token("globex:jti-1", NOW + 300, now=NOW + 1)
        # Durable: a restarted node (or another replica on the same database) still knows it.
        await store.close()
        reopened = await store_factory(data_key)
        try:
            assert not await reopened.claim_token("acme:jti-1", NOW + 300, now=NOW + 2)
            # Forgotten once expired (the token itself is refused by then anyway).
            assert await reopened.claim_token("acme:jti-1", NOW + 900, now=NOW + 301)
        finally:
            await reopened.close()

    async def test_concurrent_claims_of_one_token_admit_exactly_one(self, store: Store) -> None:
        results = await asyncio.gather(
            *(store.claim_token("acme:race", NOW + 300, now=NOW) for _ in range(50))
        )
        assert results.count(True) == 1

    # ------------------------------------------------------------------ reset (§4a)

    async def _reset_request(self, store: Store, max_guesses: int = 5) -> tuple[Any, Any]:
        reg = await self._registered(store, max_guesses=max_guesses)
        for _ in range(2):
            await store.count_guess(
                USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
            )
        att = attempt(reg)
        nonce = os.urandom(16)
        counted = await store.count_guess(USER, att.request, nonce=nonce, now=NOW, peer=PEER)
        key = unlock(att, node_recover2(counted.record, att.request, nonce=nonce)).unlock_key
        reset_nonce = os.urandom(40)
        proof = kdf.reset_proof(kdf.unlock_tag(key, reg.node.node_id), reg.version, reset_nonce)
        return reg, ResetGuesses(version=reg.version, nonce=reset_nonce, proof=proof)

    async def _count(self, store: Store) -> int:
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None
        return user.committed.guess_count

    async def test_reset_guesses_once_per_nonce(self, store: Store) -> None:
        reg, request = await self._reset_request(store)
        assert await self._count(store) == 3
        await store.reset_guesses(USER, request, expires_at=NOW + 60, now=NOW, peer=PEER)
        assert await self._count(store) == 0
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        with pytest.raises(NodeRefusal) as replay:
            await store.reset_guesses(USER, request, expires_at=NOW + 60, now=NOW + 1, peer=PEER)
        assert replay.value.kind is ErrorKind.STALE_ATTEMPT
        assert await self._count(store) == 1

    async def test_reset_refusals_change_nothing_and_keep_the_nonce(self, store: Store) -> None:
        reg, request = await self._reset_request(store)
        bad_proof = ResetGuesses(version=reg.version, nonce=request.nonce, proof=bytes(32))
        other_version = ResetGuesses(os.urandom(16), request.nonce, request.proof)
        for bad, kind in ((bad_proof, ErrorKind.BAD_UNLOCK_TAG), (other_version, None)):
            with pytest.raises(NodeRefusal) as info:
                await store.reset_guesses(USER, bad, expires_at=NOW + 60, now=NOW, peer=PEER)
            assert info.value.kind is (kind or ErrorKind.NOT_REGISTERED)
            assert await self._count(store) == 3
        # a refused proof did not spend the nonce: the right one still works
        await store.reset_guesses(USER, request, expires_at=NOW + 60, now=NOW, peer=PEER)
        assert await self._count(store) == 0

    async def test_concurrent_resets_with_one_nonce_admit_one(self, store: Store) -> None:
        _, request = await self._reset_request(store)
        results = await asyncio.gather(
            *(
                store.reset_guesses(USER, request, expires_at=NOW + 60, now=NOW, peer=PEER)
                for _ in range(10)
            ),
            return_exceptions=True,
        )
        assert sum(1 for r in results if r is None) == 1
        assert all(
            isinstance(r, NodeRefusal) and r.kind is ErrorKind.STALE_ATTEMPT
            for r in results
            if r is not None
        )

    # ------------------------------------------------------------------ operator report

    async def test_list_versions_pages_metadata_only(self, store: Store) -> None:
        reg = await self._registered(store, max_guesses=4)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        other = make_registration(user=OTHER_USER)
        await store.register_pending(OTHER_USER, other.request, node=other.node, now=NOW, peer=PEER)
        await store.delete(UserRef("acme", "carol"), 3, now=NOW, peer=PEER)
        await store.register_pending(
            UserRef("globex", "dave"),
            make_registration(user=UserRef("globex", "dave")).request,
            node=reg.node,
            now=NOW,
            peer=PEER,
        )
        rows = await store.list_versions("acme", after_user_id="", limit=10)
        assert [user for user, _ in rows] == sorted([USER.user_id, OTHER_USER.user_id, "carol"])
        statuses = dict(rows)
        mine = statuses[USER.user_id].committed
        assert mine is not None and mine.version == reg.version
        assert (mine.max_guesses, mine.guesses_remaining, mine.locked) == (4, 3, False)
        assert statuses[OTHER_USER.user_id].pending is not None
        assert statuses["carol"].tombstone_epoch == 3 and statuses["carol"].committed is None
        first = await store.list_versions("acme", after_user_id="", limit=1)
        rest = await store.list_versions("acme", after_user_id=first[-1][0], limit=10)
        assert first + list(rest) == list(rows)
