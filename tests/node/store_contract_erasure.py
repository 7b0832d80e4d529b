"""The erasure half of the storage contract: sweeper, key generations, and trying to unseal.

A backend's test class inherits :class:`ErasureContract` next to ``StoreContract`` and adds
two fixtures: ``keys_dir`` (the key directory its ``store_factory`` uses) and ``raw`` (run one
SQL statement with ``:name`` parameters on the backend's database, outside the store: what an
attacker with a copy of the database, its WAL or a backup reads).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from pakr.node.keyrotation import KeyPolicy, rotate
from pakr.node.store.base import Store, StoreError
from pakr.node.store.keys import KeyRing
from pakr.node.store.rows import u64
from pakr.node.store.sealing import FIELD_SECRET_SHARE, Sealer, row_ad, seal_ad, wrap_ad
from pakr.proto.counting import Recover3Outcome, node_recover2
from pakr.proto.messages import LOCKOUT_GRACE_SECONDS, UserRef
from pakr.proto.recover import finish_recover3
from tests.node.node_helpers import (
    OTHER_USER,
    USER,
    Registration,
    attempt,
    make_registration,
    unlock,
    wrong_recover2,
)
from tests.node.store_contract import NOW, PEER

Raw = Callable[[str, dict[str, Any]], list[dict[str, Any]]]
DAY = 86400.0
POLICY = KeyPolicy(roll_seconds=DAY, retention_seconds=7 * DAY)
LATER = NOW + LOCKOUT_GRACE_SECONDS + 1


def sealer_of(store: Store) -> Sealer:
    sealer = getattr(store, "sealer", None)
    assert isinstance(sealer, Sealer)
    return sealer


async def register(store: Store, user: UserRef, *, max_guesses: int = 10) -> Registration:
    reg = make_registration(user=user, max_guesses=max_guesses)
    await store.register_pending(user, reg.request, node=reg.node, now=NOW, peer=PEER)
    await store.commit(user, reg.version, now=NOW, peer=PEER)
    return reg


async def recovers(store: Store, reg: Registration, now: float) -> bool:
    """A full recovery on this store (threshold 1) at ``now``."""
    att = attempt(reg)
    result = await store.count_guess(
        reg.user, att.request, nonce=os.urandom(16), now=now, peer=PEER
    )
    assert result.record.attempt is not None
    reply = node_recover2(result.record, att.request, nonce=result.record.attempt.nonce)
    unlocked = unlock(att, reply)
    released = await store.release(reg.user, unlocked.requests[reg.node], now=now, peer=PEER)
    assert released.outcome is Recover3Outcome.MATCH and released.reply is not None
    return finish_recover3(unlocked, {reg.node: released.reply}, threshold=1) == reg.secret


def reachable_keys(roots: list[Path], data_key: bytes) -> list[bytes]:
    """Every key an attacker holding these directories has: the data key, every generation
    file that opens under it, and every 64-hex-character string in any file."""
    found = [data_key]
    for root in roots:
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            blob = path.read_bytes()
            found += [bytes.fromhex(m.decode()) for m in re.findall(rb"[0-9a-f]{64}", blob)]
            if path.name.startswith("gen-") and path.suffix == ".key":
                ring = KeyRing(data_key, path.parent)
                found += [ring.key(g.number) for g in ring.generations()]
    return found


def opens(keys: list[bytes], user: UserRef, row: dict[str, Any]) -> bool:
    """Whether any key opens the row's wrapped version key, or its sealed share directly."""
    version = bytes(row["version"])
    ad_row = row_ad(user, version)
    sealed = bytes(row["sealed_secret_share"])
    wrapped = bytes(row["wrapped_key"])
    for key in keys:
        aead = ChaCha20Poly1305(key)
        attempts = [
            (wrapped, wrap_ad(ad_row, int(row["key_generation"]))),
            (sealed, seal_ad(user, version, FIELD_SECRET_SHARE)),
        ]
        for blob, ad in attempts:
            try:
                inner = aead.decrypt(blob[:12], blob[12:], ad)
            except InvalidTag:
                continue
            if blob is sealed:
                return True
            try:  # the version key: it must also open the sealed share
                ChaCha20Poly1305(inner).decrypt(
                    sealed[:12], sealed[12:], seal_ad(user, version, FIELD_SECRET_SHARE)
                )
            except InvalidTag:
                continue
            return True
    return False


class ErasureContract:
    """Subclass next to ``StoreContract``; provide ``keys_dir`` and ``raw``."""

    def version_rows(self, raw: Raw, user: UserRef) -> list[dict[str, Any]]:
        return raw(
            "SELECT * FROM versions WHERE tenant = :t AND user_id = :u",
            {"t": user.tenant, "u": user.user_id},
        )

    async def test_sweep_erases_due_lockouts_without_a_request(self, store: Store) -> None:
        reg = await register(store, USER, max_guesses=1)
        other = await register(store, OTHER_USER, max_guesses=1)
        await store.count_guess(USER, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER)
        swept = await store.sweep(NOW + 1, peer="sweeper")  # still inside the grace
        assert (swept.locked, swept.superseded) == (0, 0)
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None and not user.committed.locked
        swept = await store.sweep(LATER, peer="sweeper")
        assert swept.locked == 1
        user = await store.get_user(USER)
        assert user is not None and user.committed is not None and user.committed.locked
        assert (await store.sweep(LATER, peer="sweeper")).locked == 0
        alive = await store.get_user(OTHER_USER)  # guesses left: untouched
        assert alive is not None and alive.committed is not None and not alive.committed.locked
        assert await recovers(store, other, LATER)
        rows = await store.read_audit(USER.tenant, USER.user_id, after_id=0, limit=100)
        assert rows[-1].op == "locked" and rows[-1].peer == "sweeper"

    async def test_sweep_drops_superseded_pending_never_an_only_copy(
        self, store: Store, raw: Raw
    ) -> None:
        reg = await register(store, USER)
        newer = make_registration(epoch=2, expected=reg.version)
        await store.register_pending(USER, newer.request, node=newer.node, now=NOW, peer=PEER)
        only = make_registration(user=OTHER_USER, epoch=3)
        await store.register_pending(OTHER_USER, only.request, node=only.node, now=NOW, peer=PEER)
        assert (await store.sweep(NOW, peer="sweeper")).superseded == 0  # epoch 2 > 1: kept
        # A committed version of the same or a newer epoch makes the pending one dead.
        raw(
            "UPDATE versions SET epoch = :e WHERE tenant = :t AND user_id = :u"
            " AND slot = 'committed'",
            {"e": u64(2), "t": USER.tenant, "u": USER.user_id},
        )
        assert (await store.sweep(NOW, peer="sweeper")).superseded == 1
        user = await store.get_user(USER)
        assert user is not None and user.pending is None and user.committed is not None
        assert user.committed.version == reg.version
        alone = await store.get_user(OTHER_USER)  # a pending version alone is never dropped
        assert alone is not None and alone.pending is not None
        assert [r["slot"] for r in self.version_rows(raw, USER)] == ["committed"]

    async def test_rewrap_moves_one_generation_and_destroy_refuses_live_rows(
        self, store: Store, raw: Raw
    ) -> None:
        keys = sealer_of(store).keys
        first = await register(store, USER)
        keys.roll(NOW + DAY)
        second = await register(store, OTHER_USER)
        (old,) = {r["key_generation"] for r in self.version_rows(raw, USER)}
        (new,) = {r["key_generation"] for r in self.version_rows(raw, OTHER_USER)}
        assert new > old and await store.key_generation_uses() == {old: 1, new: 1}
        uses = (await store.key_generation_uses())[old]
        with pytest.raises(StoreError, match="live rows"):
            keys.destroy(old, live_rows=uses, now=NOW + DAY)
        sealed_before = [r["sealed_secret_share"] for r in self.version_rows(raw, USER)]
        assert await store.rewrap(old, now=NOW + DAY, limit=100) == 1
        assert await store.rewrap(old, now=NOW + DAY, limit=100) == 0
        assert await store.key_generation_uses() == {new: 2}
        # only the wrapped key moved: the sealed values are byte for byte the same
        assert [r["sealed_secret_share"] for r in self.version_rows(raw, USER)] == sealed_before
        with pytest.raises(StoreError, match="newest"):
            keys.destroy(new, live_rows=0, now=NOW + DAY)
        keys.destroy(old, live_rows=0, now=NOW + DAY)
        assert await recovers(store, first, NOW + DAY)
        assert await recovers(store, second, NOW + DAY)

    async def test_locked_user_unsealable_from_any_copy_after_the_window(
        self, store: Store, raw: Raw, keys_dir: Path, data_key: bytes, tmp_path: Path
    ) -> None:
        locked = await register(store, USER, max_guesses=1)
        alive = await register(store, OTHER_USER)
        (copy,) = self.version_rows(raw, USER)  # a disk image, WAL or backup of this moment
        keys = sealer_of(store).keys
        assert opens(reachable_keys([tmp_path, keys_dir], data_key), USER, copy)  # can fail
        await store.count_guess(
            USER, wrong_recover2(locked), nonce=os.urandom(16), now=NOW, peer=PEER
        )
        assert (await store.sweep(LATER, peer="sweeper")).locked == 1
        (erased,) = self.version_rows(raw, USER)
        assert erased["wrapped_key"] is None and erased["sealed_secret_share"] is None
        destroyed: list[int] = []
        for day in range(11):
            report = await rotate(store, keys, POLICY, NOW + day * DAY)
            destroyed += report.destroyed
            assert not report.refused
        assert copy["key_generation"] in destroyed
        assert not opens(reachable_keys([tmp_path, keys_dir], data_key), USER, copy)
        assert await recovers(store, alive, NOW + 11 * DAY)  # a live user lost nothing
