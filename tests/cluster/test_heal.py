"""Issue 14: every successful login heals (guess counts, limits, copies) under node churn.

The three repros of the issue against real node processes (SQLite), and what a
``register`` that stored the new version on some nodes but committed nowhere reports.
Each node's durable state is read from its database (read-only) to see what the nodes hold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import pytest

import pakr
from pakr.coordinator.localcluster import LocalCluster
from tests.security.sec_live import client_for

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.cluster(nodes=5, threshold=3, register_threshold=4),
]

PASSWORD = b"correct horse"
WRONG = b"wrong horse"
SECRET = b"the secret"


@dataclass(frozen=True)
class Held:
    """One node's committed version of a user, as its database holds it."""

    version: bytes
    max_guesses: int
    guess_count: int
    locked: bool


def committed(cluster: LocalCluster, user: str) -> dict[int, Held | None]:
    """Each node's committed version of ``user`` (None: the node holds none)."""
    out: dict[int, Held | None] = {}
    for node in cluster.nodes:
        path = node.dir / "node.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT version, max_guesses, guess_count, sealed_oprf_key_share IS NULL"
                " FROM versions WHERE tenant = ? AND user_id = ? AND slot = 'committed'",
                (cluster.tenant, user),
            ).fetchone()
        finally:
            conn.close()
        out[node.index] = None if row is None else Held(bytes(row[0]), row[1], row[2], bool(row[3]))
    return out


def counting(cluster: LocalCluster, user: str) -> list[int]:
    """The nodes whose committed version of ``user`` has counted guesses."""
    return sorted(i for i, h in committed(cluster, user).items() if h and h.guess_count)


def test_repro1_stale_guess_counts_are_reset_by_the_next_login(fresh_cluster: LocalCluster) -> None:
    """2 wrong, a login with one counting node down, 2 more wrong, a login: every node that
    holds the version ends at count 0 with its shares (today the stale node stays exhausted
    and erases its shares after the grace)."""
    user = "repro1"
    with client_for(fresh_cluster) as client:
        client.register(user, PASSWORD, SECRET, max_guesses=4)
        for _ in range(2):
            with pytest.raises(pakr.InvalidPassword):
                client.recover(user, WRONG)
        stale = counting(fresh_cluster, user)[0]
        fresh_cluster.kill_node(stale)
        assert client.recover(user, PASSWORD) == SECRET
        fresh_cluster.start_node(stale)
        assert committed(fresh_cluster, user)[stale].guess_count == 2  # type: ignore[union-attr]
        for _ in range(2):
            with pytest.raises(pakr.InvalidPassword):
                client.recover(user, WRONG)
        assert client.recover(user, PASSWORD) == SECRET
    held = committed(fresh_cluster, user)
    assert all(h is not None and not h.locked for h in held.values()), held
    assert {h.guess_count for h in held.values() if h} == {0}, held


def test_repro1_an_honest_user_is_not_told_locked_out(fresh_cluster: LocalCluster) -> None:
    """Fewer than max_guesses wrong guesses since the last login: never "locked out"."""
    user = "repro1-message"
    with client_for(fresh_cluster) as client:
        client.register(user, PASSWORD, SECRET, max_guesses=4)
        for _ in range(2):
            with pytest.raises(pakr.InvalidPassword):
                client.recover(user, WRONG)
        stale = counting(fresh_cluster, user)[0]
        fresh_cluster.kill_node(stale)
        assert client.recover(user, PASSWORD) == SECRET
        fresh_cluster.start_node(stale)
        for _ in range(2):
            with pytest.raises(pakr.InvalidPassword) as wrong:
                client.recover(user, WRONG)
            assert wrong.value.guesses_remaining > 0, str(wrong.value)


def test_repro2_change_password_keeps_the_recovered_versions_limit(
    fresh_cluster: LocalCluster,
) -> None:
    """Register max 10, re-register max 3 with one node down, change the password: the new
    version keeps 3 (today: 10, taken from the node that missed the re-registration)."""
    user = "repro2"
    with client_for(fresh_cluster) as client:
        client.register(user, PASSWORD, SECRET, max_guesses=10)
        fresh_cluster.kill_node(5)
        client.register(user, PASSWORD, SECRET, max_guesses=3, if_exists="replace")
        fresh_cluster.start_node(5)
        client.change_password(user, PASSWORD, b"new password")
        held = committed(fresh_cluster, user)
        assert {h.max_guesses for h in held.values() if h} == {3}, held
        for _ in range(3):
            with pytest.raises(pakr.InvalidPassword):
                client.recover(user, WRONG)
        with pytest.raises(pakr.InvalidPassword) as exhausted:
            client.recover(user, WRONG)
        assert exhausted.value.guesses_remaining == 0


def test_repro3_a_login_fills_the_node_that_missed_a_registration(
    fresh_cluster: LocalCluster,
) -> None:
    """A node down during a re-registration keeps the old version; the next login writes the
    secret back to every node, so any n - t nodes may then fail (today: two given nodes
    down make the user unrecoverable)."""
    user = "repro3"
    with client_for(fresh_cluster) as client:
        client.register(user, PASSWORD, b"old secret")
        fresh_cluster.kill_node(5)
        client.register(user, PASSWORD, SECRET, if_exists="replace")
        fresh_cluster.start_node(5)
        _until_answering(client, user, 5)
        before = committed(fresh_cluster, user)
        assert len({h.version for h in before.values() if h}) == 2
        assert client.recover(user, PASSWORD) == SECRET
        after = committed(fresh_cluster, user)
        assert len({h.version for h in after.values() if h}) == 1, after
        assert all(h is not None and not h.locked for h in after.values())
        # the login after a fill needs none: nothing changes
        assert client.recover(user, PASSWORD) == SECRET
        assert committed(fresh_cluster, user) == after
        fresh_cluster.kill_node(1)
        fresh_cluster.kill_node(2)
        assert client.recover(user, PASSWORD) == SECRET


def _until_answering(client: pakr.Client, user: str, index: int) -> None:
    """Wait until this client reaches node ``index`` again (its channel reconnects with
    backoff after a restart): a fill needs the node's Recover1 answer, and a node that does
    not answer in time is treated as merely down (no fill, by design)."""
    for _ in range(100):
        report = client.status(user)
        if any(node.index == index and node.reachable for node in report.nodes):
            return
        time.sleep(0.1)
    raise AssertionError(f"node {index} never answered after its restart")


def test_no_fill_while_a_node_is_merely_down(
    fresh_cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With one node down for good, logins write nothing: zero fills per login (3 users,
    one of them registered while the node was already down, 4 logins each)."""
    users = ["down-a", "down-b"]
    with client_for(fresh_cluster) as client:
        for user in users:
            client.register(user, PASSWORD, SECRET)
        fresh_cluster.kill_node(2)
        client.register("down-c", PASSWORD, SECRET)
        users.append("down-c")
        before = {user: committed(fresh_cluster, user) for user in users}
        with caplog.at_level(logging.INFO, logger="pakr"):
            for _ in range(4):
                for user in users:
                    assert client.recover(user, PASSWORD) == SECRET
        assert {user: committed(fresh_cluster, user) for user in users} == before
    fills = [r for r in caplog.records if "missing copies filled" in r.getMessage()]
    assert fills == []


def test_register_reaching_too_few_nodes_says_it_may_have_stored(
    fresh_cluster: LocalCluster,
) -> None:
    """Register2 stored the new version on 3 nodes (< r = 4) and none committed: the error
    is ``CommitIncomplete`` (it may be in force; call again), not "nothing written"."""
    user = "partial"
    fresh_cluster.kill_node(5)
    fresh_cluster.kill_node(4)
    fresh_cluster.start_node(4, env={"PAKR_CRASH_AT": "register2.before_commit"})
    with client_for(fresh_cluster) as client:
        with pytest.raises(pakr.CommitIncomplete) as partial:
            client.register(user, PASSWORD, SECRET)
        assert "3 of the 4" in str(partial.value)
        # a first registration held (pending) by >= t nodes is recoverable
        assert client.recover(user, PASSWORD) == SECRET
        fresh_cluster.kill_node(3)
        with pytest.raises(pakr.ClusterUnavailable):
            client.register("nothing", PASSWORD, SECRET)


def _missed_reregistration(cluster: LocalCluster, user: str) -> None:
    """``user`` registered on all nodes, then re-registered with node 5 down (r = 4)."""
    with client_for(cluster) as client:
        client.register(user, PASSWORD, b"old secret")
        cluster.kill_node(5)
        client.register(user, PASSWORD, SECRET, if_exists="replace")
        cluster.start_node(5)


@pytest.mark.parametrize("pause", ["before_fill", "after_fill_register1"])
def test_fill_never_writes_back_a_password_changed_meanwhile(
    fresh_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, pause: str
) -> None:
    """Device A recovers and is paused before its fill (or inside it, after the fill's own
    Register1 found nothing newer); device B changes the password; A resumes: the new
    password works, the old fails, A's fill aborted."""
    from pakr._operations import recover as recover_op
    from pakr._operations import register as register_op
    from tests.security.sec_live import async_client_for

    user = f"interleave-{pause}"
    _missed_reregistration(fresh_cluster, user)
    paused, resume = asyncio.Event(), asyncio.Event()
    fills: list[bool] = []
    original_fill = recover_op.heal_fill
    original_once = register_op.register_once

    async def fill_after_pause(*args: Any, **kwargs: Any) -> bool:
        if pause == "before_fill":
            paused.set()
            await resume.wait()
        fills.append(await original_fill(*args, **kwargs))
        return fills[-1]

    async def once_after_pause(*args: Any, **kwargs: Any) -> bytes:
        if pause == "after_fill_register1" and kwargs.get("states") is not None:
            paused.set()
            await resume.wait()
        return await original_once(*args, **kwargs)

    monkeypatch.setattr(recover_op, "heal_fill", fill_after_pause)
    monkeypatch.setattr(register_op, "register_once", once_after_pause)

    async def scenario() -> bytes:
        async with async_client_for(fresh_cluster) as a, async_client_for(fresh_cluster) as b:
            device_a = asyncio.ensure_future(a.recover(user, PASSWORD))
            await asyncio.wait_for(paused.wait(), 60)
            await b.change_password(user, PASSWORD, b"new password")
            resume.set()
            return await device_a

    assert asyncio.run(scenario()) == SECRET
    assert fills == [False]
    with client_for(fresh_cluster) as client:
        assert client.recover(user, b"new password") == SECRET
        with pytest.raises(pakr.InvalidPassword):
            client.recover(user, PASSWORD)
    held = committed(fresh_cluster, user)
    assert len({h.version for h in held.values() if h}) == 1, held


@pytest.mark.parametrize("change", ["change_password", "register"])
def test_a_version_replaced_during_a_recovery_is_a_conflict_not_a_lockout(
    fresh_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Device A answers Recover1 and is paused before Recover2; device B changes the password
    (or re-registers) on every node; A resumes. Every node now refuses A's version as "not
    held": the user's secret changed under A, so A gets ``Conflict`` (try again), never
    ``LockedOut`` ("the secret is erased"), and B's new password works (the soak's
    "old password refused (locked out)" violation)."""
    from pakr._operations import recover as recover_op
    from tests.security.sec_live import async_client_for

    user = f"replaced-{change}"
    with client_for(fresh_cluster) as client:
        client.register(user, PASSWORD, SECRET)
    paused, resume = asyncio.Event(), asyncio.Event()
    original_stretch = recover_op.stretch

    async def stretch_after_pause(*args: Any, **kwargs: Any) -> tuple[bytes, bytes]:
        if not paused.is_set():
            paused.set()
            await resume.wait()
        return await original_stretch(*args, **kwargs)

    monkeypatch.setattr(recover_op, "stretch", stretch_after_pause)

    async def scenario() -> None:
        async with async_client_for(fresh_cluster) as a, async_client_for(fresh_cluster) as b:
            device_a = asyncio.ensure_future(a.recover(user, PASSWORD))
            await asyncio.wait_for(paused.wait(), 60)
            if change == "change_password":
                await b.change_password(user, PASSWORD, b"new password")
            else:
                await b.register(user, b"new password", SECRET, if_exists="replace")
            resume.set()
            with pytest.raises(pakr.Conflict):
                await device_a

    asyncio.run(scenario())
    monkeypatch.setattr(recover_op, "stretch", original_stretch)
    with client_for(fresh_cluster) as client:
        assert client.recover(user, b"new password") == SECRET
        with pytest.raises(pakr.InvalidPassword) as refused:
            client.recover(user, PASSWORD)
        assert not isinstance(refused.value, pakr.LockedOut)


def test_replication_report_names_what_heal_has_not_reached(fresh_cluster: LocalCluster) -> None:
    """``pakr replication``: node 5 missed a re-registration, so it is behind for that user
    (and a user registered with node 5 down is missing there); a login heals its user only."""
    from tests.cluster.cluster_helpers import run_admin

    _missed_reregistration(fresh_cluster, "stale")
    with client_for(fresh_cluster) as client:
        client.register("fresh", PASSWORD, SECRET)
        fresh_cluster.kill_node(5)
        client.register("never-logs-in", PASSWORD, SECRET)
        fresh_cluster.start_node(5)

    def report() -> dict[str, Any]:
        code, out, err = run_admin(
            "replication",
            "--manifest",
            str(fresh_cluster.manifest_path),
            "--token-key",
            str(fresh_cluster.tenant_key_path),
            "--operator-key",
            fresh_cluster.operator_public_key(),
            "--list",
        )
        assert code == 0, err
        return dict(json.loads(out))

    before = report()
    assert before["users"] == 3
    assert before["under_replicated"] == ["never-logs-in", "stale"]
    behind = {name: node["behind"] for name, node in before["nodes"].items()}
    assert sorted(n for n, users in behind.items() if users) == [
        n for n in behind if n.startswith("node5")
    ]
    assert before["held_by_t_or_fewer"] == []
    with client_for(fresh_cluster) as client:
        assert client.recover("stale", PASSWORD) == SECRET
    after = report()
    assert after["under_replicated"] == ["never-logs-in"]
    fresh_cluster.kill_node(4)
    down = report()
    node4 = next(node for name, node in down["nodes"].items() if name.startswith("node4"))
    assert not node4["reachable"] and "error" in node4
    assert down["held_by_t_or_fewer"] == ["never-logs-in"]
