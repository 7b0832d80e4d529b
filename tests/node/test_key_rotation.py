"""Key rotation under kill -9, on both stores; backups once their generation is gone.

``pakr node rotate-keys`` runs in a real process, killed with SIGKILL at every step of a
rotation (after a roll, in the middle of re-wrapping, before and in the middle of a
destruction) while the clock advances day by day past the retention window; a clean run
follows each crash. Afterwards every live user still recovers and the generations past the
window are gone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pakr.node.backup import TABLES, backup_node, restore_node
from pakr.node.cli import node_sealer, rotate_node
from pakr.node.config import DataKeySource, NodeConfig, load_config, resolve_storage_url
from pakr.node.store import open_store
from pakr.node.store.keys import KeyRing
from pakr.proto.errors import ConfigError
from pakr.proto.files import write_private_file
from pakr.proto.messages import UserRef
from tests.node.node_helpers import Registration, make_registration, wrong_recover2
from tests.node.store_contract import NOW, PEER
from tests.node.store_contract_erasure import LATER, opens, reachable_keys, recovers
from tests.postgres.pg_fixtures import pg_database_url, pg_url, postgres_server

__all__ = ["pg_database_url", "pg_url", "postgres_server"]

DAY = 86400.0
BYTES_COLUMNS = {name for name, kind in TABLES["versions"].items() if kind == "bytes"}
POINTS = ("after_roll", "mid_rewrap", "before_destroy", "mid_destroy")


def node_config(directory: Path, storage: str) -> NodeConfig:
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    write_private_file(directory / "keys" / "data.key", os.urandom(32).hex().encode())
    NodeConfig(
        path=directory / "node.toml",
        node_id=os.urandom(16),
        index=1,
        listen="127.0.0.1:0",
        insecure=True,
        tls_cert=None,
        tls_key=None,
        storage_url=resolve_storage_url(storage, directory),
        data_key=DataKeySource(file=directory / "keys" / "data.key"),
        keys_dir=directory / "keys",
    ).save()
    return load_config(directory / "node.toml")


def rotate_keys(config: NodeConfig, now: float, crash: str | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAKR_CRASH")}
    if crash is not None:
        env["PAKR_CRASH_AT"] = f"rotate.{crash}"
    argv = ["rotate-keys", "--config", str(config.path), "--now", repr(now)]
    done = subprocess.run(
        [sys.executable, "-m", "pakr.node", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if crash is None:
        assert done.returncode == 0, done.stderr
        json.loads(done.stdout.strip().splitlines()[-1])
    else:
        assert done.returncode in (0, -9), done.stderr
    return done.returncode


async def populate(config: NodeConfig, n: int) -> tuple[list[Registration], UserRef]:
    store = await open_store(config.storage_url, node_sealer(config))
    try:
        regs = []
        for i in range(n):
            user = UserRef("acme", f"user{i}")
            reg = make_registration(user=user)
            await store.register_pending(user, reg.request, node=reg.node, now=NOW, peer=PEER)
            await store.commit(user, reg.version, now=NOW, peer=PEER)
            regs.append(reg)
        victim = UserRef("acme", "victim")
        locked = make_registration(user=victim, max_guesses=1)
        await store.register_pending(victim, locked.request, node=locked.node, now=NOW, peer=PEER)
        await store.commit(victim, locked.version, now=NOW, peer=PEER)
        await store.count_guess(
            victim, wrong_recover2(locked), nonce=os.urandom(16), now=NOW, peer=PEER
        )
        assert (await store.sweep(LATER, peer="sweeper")).locked == 1
        return regs, victim
    finally:
        await store.close()


async def all_recover(config: NodeConfig, regs: list[Registration], now: float) -> bool:
    store = await open_store(config.storage_url, node_sealer(config))
    try:
        return all([await recovers(store, reg, now) for reg in regs])
    finally:
        await store.close()


async def register_one(config: NodeConfig, name: str, now: float) -> Registration:
    store = await open_store(config.storage_url, node_sealer(config))
    try:
        user = UserRef("acme", name)
        reg = make_registration(user=user)
        await store.register_pending(user, reg.request, node=reg.node, now=now, peer=PEER)
        await store.commit(user, reg.version, now=now, peer=PEER)
        return reg
    finally:
        await store.close()


def crash_and_advance(config: NodeConfig) -> None:
    """Day by day past the window, a user registering every day (so every generation that
    expires still wraps live rows); from day 7 on, each day's rotation is killed at one step
    in a real process, then finished by a clean pass."""
    regs, _ = asyncio.run(populate(config, 2))
    crashes = dict(zip(range(7, 11), POINTS, strict=True))
    for day in range(1, 11):
        now = NOW + day * DAY
        regs.append(asyncio.run(register_one(config, f"day{day}", now - 3600)))
        if day in crashes:
            assert rotate_keys(config, now, crash=crashes[day]) == -9, crashes[day]
        report = asyncio.run(rotate_node(config, now))  # finishes what the crash left
        assert not report.refused
    keys = KeyRing(config.data_key.load(), config.keys_dir)
    assert len(keys.destroyed()) >= 3
    assert all(g.created_at > NOW + 2 * DAY for g in keys.generations())
    assert asyncio.run(all_recover(config, regs, NOW + 10 * DAY))


def test_crash_and_advance_sqlite(tmp_path: Path) -> None:
    crash_and_advance(node_config(tmp_path / "node", "sqlite:///node.db"))


@pytest.mark.postgres
def test_crash_and_advance_postgres(tmp_path: Path, pg_url: str) -> None:
    crash_and_advance(node_config(tmp_path / "node", pg_url))


def test_backup_fails_clearly_once_its_generation_is_destroyed(tmp_path: Path) -> None:
    config = node_config(tmp_path / "node", "sqlite:///node.db")
    regs, _ = asyncio.run(populate(config, 2))
    backup = tmp_path / "inside-window.jsonl"
    summary = backup_node(config, backup)
    header = json.loads(backup.read_bytes().splitlines()[0])
    assert header["key_generations"] and summary.counts["versions"] == 3
    blob = backup.read_bytes()  # no key travels in a backup
    keys = KeyRing(config.data_key.load(), config.keys_dir)
    for key in [config.data_key.load(), *(keys.key(g.number) for g in keys.generations())]:
        assert key.hex().encode() not in blob and base64.b64encode(key) not in blob

    def fresh_target(name: str) -> NodeConfig:
        path = config.path.with_name(f"{name}.toml")
        url = resolve_storage_url(f"sqlite:///{name}", path.parent)
        replace(config, path=path, storage_url=url).save()
        return load_config(path)

    inside = fresh_target("restored.db")  # inside the window: restores (see operator.md)
    assert restore_node(inside, backup).counts["versions"] == 3
    for day in range(1, 10):
        asyncio.run(rotate_node(config, NOW + day * DAY))
    outside = fresh_target("too-late.db")
    with pytest.raises(ConfigError, match=r"key generation \d+ was destroyed"):
        restore_node(outside, backup)
    assert asyncio.run(all_recover(config, regs, NOW + 10 * DAY))


def test_replicas_rolling_at_once_agree_on_one_generation(tmp_path: Path) -> None:
    data_key = os.urandom(32)
    first, second = KeyRing(data_key, tmp_path / "keys"), KeyRing(data_key, tmp_path / "keys")
    made = first.roll(NOW)
    adopted = second.roll(NOW + 1)  # raced: the file exists, so it takes the winner's
    assert adopted == made
    assert second.key(made.number) == first.key(made.number)
    assert [p.name for p in (tmp_path / "keys").iterdir()] == [f"gen-{made.number:08d}.key"]


def test_node_warns_when_keys_share_the_database_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pakr.node.server import warn_about_key_placement

    apart = node_config(tmp_path / "apart", "sqlite:///node.db")
    with caplog.at_level("WARNING", logger="pakr.node.server"):
        warn_about_key_placement(apart)
    assert not caplog.records
    shared = node_config(tmp_path / "shared", "sqlite:///node.db")
    replace(shared, keys_dir=shared.path.parent).save()
    with caplog.at_level("WARNING", logger="pakr.node.server"):
        warn_about_key_placement(load_config(shared.path))
    assert "shares a directory with the database" in caplog.text


def test_schedules_are_staggered_per_node() -> None:
    from pakr.node.keyrotation import KeyPolicy

    phases = {KeyPolicy.for_node(os.urandom(16)).phase for _ in range(20)}
    assert len(phases) == 20 and all(0 <= p < DAY for p in phases)
    policy = KeyPolicy.for_node(bytes(16))
    boundary = policy.last_boundary(NOW)
    assert boundary <= NOW < boundary + DAY and (boundary - policy.phase) % DAY == 0


def test_a_backup_taken_before_a_lockout_opens_nothing_after_the_window(tmp_path: Path) -> None:
    """The unseal test against a real ``pakr node backup`` file: every key reachable from the
    node directory, the key directory and the backup's directory is tried on the locked
    user's row as the backup holds it."""
    config = node_config(tmp_path / "node", "sqlite:///node.db")
    victim = UserRef("acme", "victim")

    async def register_victim() -> Registration:
        store = await open_store(config.storage_url, node_sealer(config))
        try:
            reg = make_registration(user=victim, max_guesses=1)
            await store.register_pending(victim, reg.request, node=reg.node, now=NOW, peer=PEER)
            await store.commit(victim, reg.version, now=NOW, peer=PEER)
            return reg
        finally:
            await store.close()

    async def lock_out(reg: Registration) -> None:
        store = await open_store(config.storage_url, node_sealer(config))
        try:
            await store.count_guess(
                victim, wrong_recover2(reg), nonce=os.urandom(16), now=NOW, peer=PEER
            )
            assert (await store.sweep(LATER, peer="sweeper")).locked == 1
        finally:
            await store.close()

    reg = asyncio.run(register_victim())
    (tmp_path / "backups").mkdir()
    backup = tmp_path / "backups" / "before-lockout.jsonl"
    backup_node(config, backup)
    row: dict[str, object] = {}
    for line in backup.read_bytes().splitlines()[1:-1]:
        entry = json.loads(line)
        if entry["table"] == "versions" and entry["row"]["user_id"] == victim.user_id:
            row = {
                k: base64.b64decode(v) if k in BYTES_COLUMNS and v is not None else v
                for k, v in entry["row"].items()
            }
    roots = [tmp_path / "node", tmp_path / "backups", config.keys_dir]
    data_key = config.data_key.load()
    assert opens(reachable_keys(roots, data_key), victim, row)  # the test can fail
    asyncio.run(lock_out(reg))
    for day in range(1, 10):
        asyncio.run(rotate_node(config, NOW + day * DAY))
    assert not opens(reachable_keys(roots, data_key), victim, row)
