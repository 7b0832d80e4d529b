"""Property 2 (docs/protocol.md §8): t colluding nodes still need one Argon2id evaluation per
password guess, and a locked-out version cannot be attacked at all.

t nodes together know k and s, so they *can* test guesses offline (the control in
``test_p1_below_threshold``); what protects the user is that each test needs the exact
Argon2id output for that user, version and parameters: no cheaper derivation, no other salt
and no weaker parameters verify, and one Argon2id run tests one candidate for one
(user, version). Once locked, a version's shares and ciphertext are gone from the database.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from pakr.node.store.sealing import Sealer
from pakr.node.store.sqlite import SqliteStore
from pakr.proto import kdf
from pakr.proto.choice import VersionChoice
from pakr.proto.counting import Recover3Outcome
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import Recover3, UserRef
from pakr.proto.recover import start_recover2
from tests.security.sec_pure import USER, offline_attack, register_world

RIGHT = b"correct horse battery staple"
CANDIDATES = (b"password", b"123456", RIGHT, b"letmein")


def test_each_guess_costs_one_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    world = register_world(3, 2, RIGHT, b"s" * 16)
    view = world.view(world.nodes[:2])  # t colluders: k and s are theirs
    calls: list[Argon2Params] = []
    real = kdf.argon2id

    def counting(password: bytes, salt: bytes, params: Argon2Params, length: int = 64) -> bytes:
        calls.append(params)
        return real(password, salt, params, length)

    monkeypatch.setattr(kdf, "argon2id", counting)
    verdicts = [offline_attack(world, view, world.stretch(pw)).accepted for pw in CANDIDATES]
    assert verdicts == [pw == RIGHT for pw in CANDIDATES]
    assert len(calls) == len(CANDIDATES)  # exactly one Argon2id per candidate …
    assert all(params == world.params for params in calls)  # … at the registered cost


def test_no_derivation_cheaper_than_the_registered_argon2id_verifies() -> None:
    """With k and s in hand, the right password still fails to verify unless it is stretched
    by Argon2id with this user's salt and the registered parameters."""
    world = register_world(3, 2, RIGHT, b"s" * 16)
    view = world.view(world.nodes[:2])
    assert offline_attack(world, view, world.stretch(RIGHT)).accepted
    digest = hashlib.sha512(RIGHT).digest()
    weak = Argon2Params(memory_kib=8, iterations=1, parallelism=1)
    other_salt = kdf.registration_salt(USER.tenant, "mallory", world.version)
    shortcuts = {
        "sha512": (digest[:32], digest[32:]),
        "weaker params": _split(kdf.argon2id(RIGHT, _salt(world), weak)),
        "one pass less": _split(
            kdf.argon2id(RIGHT, _salt(world), Argon2Params(world.params.memory_kib, 1, 1))
        ),
        "another user's salt": _split(kdf.argon2id(RIGHT, other_salt, world.params)),
        "another version's salt": kdf.stretch_password(
            RIGHT, USER.tenant, USER.user_id, os.urandom(16), world.params
        ),
    }
    for name, keys in shortcuts.items():
        assert not offline_attack(world, view, keys).accepted, name


def test_one_argon2id_run_tests_one_user_and_one_version() -> None:
    """The salt binds tenant, user and version: a precomputed table, or a run made against
    one registration, is useless against every other one."""
    params = Argon2Params.FLOOR
    version = os.urandom(16)
    keys = {
        kdf.stretch_password(RIGHT, tenant, user, v, params)
        for tenant, user, v in [
            ("acme", "alice", version),
            ("acme", "bob", version),
            ("globex", "alice", version),
            ("acme", "alice", os.urandom(16)),
        ]
    }
    assert len(keys) == 4


def _salt(world) -> bytes:  # type: ignore[no-untyped-def]
    return kdf.registration_salt(world.user.tenant, world.user.user_id, world.version)


def _split(out: bytes) -> tuple[bytes, bytes]:
    return out[:32], out[32:]


@pytest.mark.parametrize(
    "when",
    ["closed", "running"],
)
async def test_locked_version_has_nothing_left_to_attack(tmp_path: Path, when: str) -> None:
    """Spend every guess with wrong passwords on t nodes' real stores: each erases k_i, s_i,
    the tag and the ciphertext, so even their data keys give nothing to test a guess with —
    in a disk image taken after a clean shutdown (``closed``) or while the node runs or after
    a kill -9 (``running``: DB plus WAL)."""
    max_guesses = 3
    world = register_world(3, 2, RIGHT, b"s" * 16, max_guesses=max_guesses)
    user = UserRef(USER.tenant, USER.user_id)
    choice = VersionChoice(
        version=world.version,
        epoch=1,
        argon2=world.params,
        nodes=world.nodes,
        pending_nodes=(),
    )
    now = 1_000.0
    paths = []
    for node in world.nodes[:2]:
        req = world.requests[node.node_id]
        path = tmp_path / f"node{node.index}.db"
        paths.append(path)
        store = SqliteStore(path, Sealer(os.urandom(32)))
        try:
            await store.migrate()
            await store.register_pending(user, req, node=node, now=now, peer="t")
            await store.commit(user, req.version, now=now, peer="t")
            sealed_before = _sealed_columns(path)  # what a thief with the data key opens
            for _ in range(max_guesses):
                attempt = start_recover2(user, choice, os.urandom(32), os.urandom(32))
                await store.count_guess(
                    user, attempt.request, nonce=os.urandom(16), now=now, peer="t"
                )
                released = await store.release(
                    user,
                    Recover3(world.version, attempt.attempt_id, os.urandom(32)),
                    now=now,
                    peer="t",
                )
                assert released.outcome is Recover3Outcome.MISMATCH
            assert released.locked
            record = await store.get_user(user)
            assert record is not None and record.committed is not None
            assert record.committed.locked and record.committed.shares is None
            # Even the right password gets nothing from a locked version.
            attempt = start_recover2(user, choice, *world.stretch(RIGHT))
            with pytest.raises(NodeRefusal) as refused:
                await store.count_guess(
                    user, attempt.request, nonce=os.urandom(16), now=now, peer="t"
                )
            assert refused.value.kind in (ErrorKind.LOCKED, ErrorKind.NO_GUESSES)
            # A disk image of the node as it runs (or after a kill -9): DB and WAL files.
            images = [_disk_image(tmp_path, node.index)]
        finally:
            await store.close()
        images.append(_disk_image(tmp_path, node.index))  # after a clean shutdown
        erased = {
            "k_i": req.oprf_key_share.encoded,
            "s_i": req.secret_share.encoded,
            "unlock_tag": req.unlock_tag,
            "encrypted_secret": req.encrypted_secret,
            "sealed k_i": sealed_before[0],
            "sealed s_i": sealed_before[1],
            "sealed unlock_tag": sealed_before[2],
        }
        image = images[0] if when == "running" else images[1]
        left = [
            f"{name} in {file}"
            for name, value in erased.items()
            for file, data in image.items()
            if value is not None and value in data
        ]
        assert not left, f"locked version still on disk ({when}): {left}"
    for path in paths:
        assert _sealed_columns(path) == [None, None, None]


def _disk_image(directory: Path, index: int) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.glob(f"node{index}.db*")}


def _sealed_columns(path: Path) -> list[bytes | None]:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT sealed_oprf_key_share, sealed_secret_share, sealed_unlock_tag FROM versions"
        ).fetchone()
    finally:
        conn.close()
    return [None if v is None else bytes(v) for v in row]


def _fields(req) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {name: getattr(req, name) for name in req.__dataclass_fields__}
