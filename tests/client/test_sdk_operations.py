"""The SDK's operations end to end over in-process fake nodes (no network).

Covers what the protocol promises the application: t-of-n recovery, guess counting and
lockout, node failures named, a malicious node detected, password change and delete, and the
error an application sees when nodes disagree.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import replace
from typing import Any

import pytest

from pakr._tokens import DevTokenProvider
from pakr.proto.errors import (
    ClusterUnavailable,
    CommitIncomplete,
    ConfigError,
    ErrorKind,
    InvalidAuth,
    InvalidPassword,
    NodeRefusal,
    NotRegistered,
    ProtocolError,
    WeakParameters,
)
from pakr.proto.group import Element
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import Recover2Reply, UserStatus
from pakr.proto.tokens import TenantKey
from pakr.testing import DEFAULT_TENANT as TENANT
from pakr.testing import FakeCluster

SECRET = bytes(range(32))


async def test_register_then_recover_round_trip() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.async_client() as client:
        await client.register("alice", "correct horse", SECRET)
        assert await client.recover("alice", "correct horse") == SECRET
    assert all(t.closed for t in cluster.transports)


@pytest.mark.parametrize("size", [0, 1, 128])
async def test_secret_sizes(size: int) -> None:
    cluster = FakeCluster(3, 2)
    secret = bytes([7]) * size
    async with cluster.async_client() as client:
        await client.register("bob", "pw", secret)
        assert await client.recover("bob", "pw") == secret


async def test_bad_arguments_refused_before_any_traffic() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        with pytest.raises(ConfigError, match="at most 128"):
            await client.register("bob", "pw", bytes(129))
        with pytest.raises(ConfigError, match="max_guesses"):
            await client.register("bob", "pw", b"", max_guesses=0)
        with pytest.raises(ConfigError, match="user_id"):
            await client.register("", "pw", b"")
        with pytest.raises(ConfigError, match="password"):
            await client.recover("bob", "")
    assert sum(sum(t.calls.values()) for t in cluster.transports) == 0


async def test_wrong_password_counts_and_reports_guesses_left() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("carol", "right", SECRET, max_guesses=4)
        with pytest.raises(InvalidPassword) as info:
            await client.recover("carol", "wrong")
        assert info.value.guesses_remaining == 3
        assert "3 guess(es) remaining" in str(info.value)
        with pytest.raises(InvalidPassword) as info:
            await client.recover("carol", "wrong again")
        assert info.value.guesses_remaining == 2
        assert await client.recover("carol", "right") == SECRET  # resets the count
        report = await client.status("carol")
    assert report.registered is True
    assert report.guesses_remaining == 4


async def test_a_recovery_asks_t_nodes_the_same_ones_every_time() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.async_client() as client:
        await client.register("cora", "right", SECRET, max_guesses=4)
        for _ in range(2):
            with pytest.raises(InvalidPassword):
                await client.recover("cora", "wrong")
        counts = [node.users[cluster.user("cora")].committed.guess_count for node in cluster.nodes]  # type: ignore[union-attr]
        assert sorted(counts) == [0, 0, 2, 2, 2]  # t nodes, both times the same three
        assert [t.calls["recover2"] for t in cluster.transports] == [2 if c else 0 for c in counts]
        assert all(t.calls["recover1"] == 2 for t in cluster.transports)  # Recover1: all n
        # A node asked so far goes down: the next one in line takes its place.
        down = next(t for t, c in zip(cluster.transports, counts, strict=True) if c)
        down.faults.down = True
        assert await client.recover("cora", "right") == SECRET
        assert sum(t.calls["recover3"] for t in cluster.transports) == 3


async def test_lockout_after_max_guesses_even_with_the_right_password() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("dave", "right", SECRET, max_guesses=2)
        for left in (1, 0):
            with pytest.raises(InvalidPassword) as info:
                await client.recover("dave", "wrong")
            assert info.value.guesses_remaining == left
        with pytest.raises(InvalidPassword) as info:
            await client.recover("dave", "right")
        assert info.value.guesses_remaining == 0
        report = await client.status("dave")
        assert report.registered is True and report.guesses_remaining == 0
        cluster.advance(601)  # the last failed attempt lapses: the nodes erase the shares
        with pytest.raises(InvalidPassword) as info:
            await client.recover("dave", "right")
        assert info.value.guesses_remaining == 0
    # The client asks t nodes for evaluations (always the same ones): they counted every guess
    # and erased their shares; the others hold fewer than t shares, which reveal nothing.
    locked = [node.users[cluster.user("dave")].committed for node in cluster.nodes]
    assert sum(1 for c in locked if c is not None and c.locked) == cluster.manifest.threshold


async def test_nfkc_normalisation_of_str_passwords() -> None:
    composed = "caf\u00e9 \uff11\uff12"  # é precomposed, full-width digits
    decomposed = unicodedata.normalize("NFD", "café 12")
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("erin", composed, SECRET)
        assert await client.recover("erin", decomposed) == SECRET
        assert await client.recover("erin", "café 12".encode()) == SECRET
        with pytest.raises(InvalidPassword):  # bytes are used exactly as given
            await client.recover("erin", decomposed.encode())


async def test_recover_with_n_minus_t_nodes_down() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.async_client() as client:
        await client.register("frank", "pw", SECRET)
        for transport in cluster.transports[:2]:
            transport.faults.down = True
        assert await client.recover("frank", "pw") == SECRET


async def test_cluster_unavailable_names_the_down_nodes() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.async_client() as client:
        await client.register("gina", "pw", SECRET)
        down = cluster.transports[:3]
        for transport in down:
            transport.faults.down = True
        with pytest.raises(ClusterUnavailable) as info:
            await client.recover("gina", "pw")
    message = str(info.value)
    for transport in down:
        assert transport.node.name in message
        assert transport.node.name in info.value.reasons
    assert "connection refused" in message


async def test_register_needs_r_nodes_and_writes_nothing_otherwise() -> None:
    cluster = FakeCluster(5, 3, r=4)
    cluster.transports[0].faults.down = True
    cluster.transports[1].faults.down = True
    async with cluster.async_client() as client:
        with pytest.raises(ClusterUnavailable):
            await client.register("hank", "pw", SECRET)
    assert all(not node.users for node in cluster.nodes)
    assert all(t.calls["register2"] == 0 for t in cluster.transports)


async def test_forged_evaluation_is_ignored_and_named_when_t_honest_remain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = FakeCluster(5, 3)
    liar = cluster.transports[0]

    def forge(rpc: str, reply: Any) -> Any:
        if rpc == "recover1" and reply.committed is not None:
            # claim the fewest guesses left: the client asks such a node first
            return replace(reply, committed=replace(reply.committed, guesses_remaining=1))
        if rpc == "recover2":
            assert isinstance(reply, Recover2Reply)
            forged = reply.evaluated_element + Element.generator()
            return replace(reply, evaluated_element=forged)
        return reply

    async with cluster.async_client() as client:
        await client.register("ivan", "pw", SECRET)
        liar.faults.rewrite = forge
        with caplog.at_level(logging.WARNING, logger="pakr"):
            assert await client.recover("ivan", "pw") == SECRET
        assert liar.node.name in caplog.text
        assert "DLEQ" in caplog.text
        # With only t nodes reachable, one of them lying: named, never a wrong secret.
        for transport in cluster.transports[3:]:
            transport.faults.down = True
        with pytest.raises(ProtocolError) as info:
            await client.recover("ivan", "pw")
    assert info.value.nodes == [liar.node.name]


async def test_forged_secret_share_is_ignored_when_t_honest_remain() -> None:
    cluster = FakeCluster(5, 3)

    def forge(rpc: str, reply: Any) -> Any:
        if rpc == "recover1" and reply.committed is not None:  # be asked first
            return replace(reply, committed=replace(reply.committed, guesses_remaining=1))
        if rpc == "recover3":
            return replace(reply, secret_share=reply.secret_share + reply.secret_share)
        return reply

    async with cluster.async_client() as client:
        await client.register("jane", "pw", SECRET)
        cluster.transports[2].faults.rewrite = forge
        assert await client.recover("jane", "pw") == SECRET
        for transport in cluster.transports[3:]:
            transport.faults.down = True
        with pytest.raises(ProtocolError) as info:
            await client.recover("jane", "pw")
    assert info.value.nodes == [cluster.transports[2].node.name]


async def test_weak_parameters_from_nodes_are_refused_before_any_guess(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = FakeCluster(3, 2)
    weak = Argon2Params(memory_kib=1024, iterations=1, parallelism=1)

    def lower(rpc: str, reply: Any) -> Any:
        if rpc == "recover1" and isinstance(reply, UserStatus) and reply.committed:
            return replace(reply, committed=replace(reply.committed, argon2=weak))
        return reply

    async with cluster.async_client() as client:
        await client.register("kate", "pw", SECRET)
        for transport in cluster.transports:
            transport.faults.rewrite = lower
        with pytest.raises(WeakParameters, match="memory_kib=1024"):
            await client.recover("kate", "pw")
        # One node lowering its parameters alone is outvoted and never used.
        for transport in cluster.transports[1:]:
            transport.faults.rewrite = None
        with caplog.at_level(logging.WARNING, logger="pakr"):
            assert await client.recover("kate", "pw") == SECRET
        assert cluster.transports[0].node.name in caplog.text
    assert all(t.calls["recover2"] == 1 for t in cluster.transports[1:])
    assert cluster.transports[0].calls["recover2"] == 0


async def test_recover2_and_recover3_are_never_retried() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.async_client() as client:
        await client.register("liam", "pw", SECRET)

        def ask_me_first(rpc: str, reply: Any) -> Any:
            if rpc == "recover1" and reply.committed is not None:
                return replace(reply, committed=replace(reply.committed, guesses_remaining=1))
            return reply

        flaky, shaky = cluster.transports[0], cluster.transports[1]
        for transport in (flaky, shaky):  # make sure the client asks these two
            transport.faults.rewrite = ask_me_first
        flaky.faults.transient_failures["recover2"] = 1
        shaky.faults.transient_failures["recover3"] = 1
        assert await client.recover("liam", "pw") == SECRET  # spares took their place
    assert flaky.calls["recover2"] == 1 and flaky.calls["recover3"] == 0
    assert shaky.calls["recover2"] == 1 and shaky.calls["recover3"] == 1
    assert all(t.calls["recover2"] <= 1 and t.calls["recover3"] <= 1 for t in cluster.transports)


async def test_transient_failures_of_idempotent_steps_are_retried() -> None:
    cluster = FakeCluster(3, 2)
    for transport in cluster.transports:
        transport.faults.transient_failures.update(
            {"register1": 1, "register2": 2, "register3": 1, "recover1": 1}
        )
    async with cluster.async_client() as client:
        await client.register("mia", "pw", SECRET)
        assert await client.recover("mia", "pw") == SECRET
    for transport in cluster.transports:
        assert transport.calls["register2"] == 3
        assert transport.calls["register3"] == 2


async def test_a_hung_node_does_not_hold_up_the_others() -> None:
    import time

    cluster = FakeCluster(5, 3)
    async with cluster.async_client(deadline=3.0) as client:
        await client.register("noah", "pw", SECRET)
        cluster.transports[4].faults.delay = 60.0
        start = time.monotonic()
        assert await client.recover("noah", "pw") == SECRET
        assert time.monotonic() - start < 1.5


async def test_step_deadline_bounds_a_failing_operation() -> None:
    import time

    cluster = FakeCluster(3, 2)
    async with cluster.async_client(deadline=0.3) as client:
        await client.register("olga", "pw", SECRET)
        for transport in cluster.transports[:2]:
            transport.faults.delay = 60.0
        start = time.monotonic()
        with pytest.raises(ClusterUnavailable, match=r"deadline|no answer in time"):
            await client.recover("olga", "pw")
        assert time.monotonic() - start < 1.0


async def test_invalid_auth_outranks_unavailability() -> None:
    cluster = FakeCluster(3, 2)
    stranger = DevTokenProvider(TenantKey.generate(TENANT, number=7))
    async with cluster.async_client(token_provider=stranger) as client:
        cluster.transports[0].faults.down = True
        with pytest.raises(InvalidAuth, match="unknown signing key"):
            await client.register("pia", "pw", SECRET)


async def test_tokens_are_per_node_and_never_reused_for_replay_checked_rpcs() -> None:
    seen: list[tuple[str, str]] = []
    cluster = FakeCluster(3, 2)
    inner = cluster.token_provider()

    async def provider(user_id: str, audience: str) -> str:  # async providers work too
        seen.append((user_id, audience))
        return inner(user_id, audience)

    async with cluster.async_client(token_provider=provider) as client:
        await client.register("quinn", "pw", SECRET)
        audiences = {aud for _, aud in seen}
        assert audiences == {t.node.node_id.hex() for t in cluster.transports}
        assert {user for user, _ in seen} == {"quinn"}
        assert len(seen) == 9  # register1, register2, register3 at three nodes: one token each
        # Recover1/2/3 are not replay-checked: Register1's tokens are reused, none minted.
        assert await client.recover("quinn", "pw") == SECRET
        assert len(seen) == 9
        await client.delete("quinn")  # Register1 reuses; Delete needs three fresh tokens
        assert len(seen) == 12


async def test_not_registered_needs_more_than_n_minus_t_nodes_saying_so() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        with pytest.raises(NotRegistered):
            await client.recover("rose", "pw")
        assert (await client.status("rose")).registered is False
        cluster.transports[0].faults.down = True  # 2 of 3 say "none": more than n - t = 1
        with pytest.raises(NotRegistered):
            await client.recover("rose", "pw")
        cluster.transports[1].faults.down = True  # 1 answer: can't tell, never "not registered"
        with pytest.raises(ClusterUnavailable):
            await client.recover("rose", "pw")
        with pytest.raises(ClusterUnavailable):
            await client.status("rose")


async def test_a_minority_claiming_not_registered_cannot_hide_a_live_secret() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.async_client() as client:
        await client.register("rick", "pw", SECRET)
        for transport in cluster.transports[:2]:
            transport.faults.rewrite = lambda rpc, reply: (
                UserStatus() if rpc == "recover1" else reply
            )
        assert await client.recover("rick", "pw") == SECRET
        cluster.transports[2].faults.down = True  # 2 liars + 2 honest: unavailable, not "none"
        with pytest.raises(ClusterUnavailable):
            await client.recover("rick", "pw")


async def test_change_password_then_old_fails_and_new_works() -> None:
    cluster = FakeCluster(5, 3)
    async with cluster.async_client() as client:
        await client.register("sam", "old", SECRET, max_guesses=7)
        await client.change_password("sam", "old", "new")
        assert await client.recover("sam", "new") == SECRET
        with pytest.raises(InvalidPassword) as info:
            await client.recover("sam", "old")
        assert info.value.guesses_remaining == 6  # the guess policy was kept


async def test_interrupted_password_change_keeps_the_old_password() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("tom", "old", SECRET)
        for transport in cluster.transports:
            transport.faults.refuse["register3"] = NodeRefusal(ErrorKind.INTERNAL, "crash")
        with pytest.raises(CommitIncomplete, match="call register again"):
            await client.change_password("tom", "old", "new")
        for transport in cluster.transports:
            transport.faults.refuse.clear()
        assert await client.recover("tom", "old") == SECRET
        with pytest.raises(InvalidPassword):
            await client.recover("tom", "new")


async def test_conflict_starts_over_from_register1() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("uma", "pw1", SECRET)
        # Another client's registration lands between our Register1 and Register2.
        other = cluster.async_client()
        original = cluster.transports[0].register2
        raced = False

        async def racing_register2(*args: Any, **kwargs: Any) -> None:
            nonlocal raced
            if not raced:
                raced = True
                await other.register("uma", "pw-other", b"other", if_exists="replace")
            await original(*args, **kwargs)

        cluster.transports[0].register2 = racing_register2  # type: ignore[method-assign]
        await client.register("uma", "pw2", b"mine", if_exists="replace")
        assert await client.recover("uma", "pw2") == b"mine"
    assert all(t.calls["register1"] >= 3 for t in cluster.transports)


async def test_pending_nodes_are_rolled_forward_by_a_recovery() -> None:
    cluster = FakeCluster(5, 3, r=4)
    async with cluster.async_client() as client:
        straggler = cluster.transports[4]
        straggler.faults.refuse["register3"] = NodeRefusal(ErrorKind.INTERNAL, "crash")
        await client.register("vera", "pw", SECRET)
        user = cluster.user("vera")
        assert straggler.fake.users[user].pending is not None
        straggler.faults.refuse.clear()
        assert await client.recover("vera", "pw") == SECRET
    record = straggler.fake.users[user]
    assert record.pending is None and record.committed is not None


async def test_delete_then_not_registered() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("walt", "pw", SECRET)
        await client.delete("walt")
        with pytest.raises(NotRegistered, match="nothing was deleted"):
            await client.delete("walt")  # nothing left to delete: said, not hidden
        with pytest.raises(NotRegistered):
            await client.recover("walt", "pw")
        report = await client.status("walt")
    assert report.registered is False
    assert all(node.deleted for node in report.nodes)


async def test_status_reports_each_node() -> None:
    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("xena", "pw", SECRET, max_guesses=5)
        cluster.transports[2].faults.down = True
        with pytest.raises(InvalidPassword):
            await client.recover("xena", "bad")
        report = await client.status("xena")
    assert report.registered is True
    assert report.guesses_remaining == 4
    by_index = {node.index: node for node in report.nodes}
    assert by_index[1].guesses_remaining == 4 and by_index[1].reachable
    assert not by_index[3].reachable and by_index[3].error is not None


async def test_closed_client_refuses_calls() -> None:
    cluster = FakeCluster(3, 2)
    client = cluster.async_client()
    await client.close()
    await client.close()
    with pytest.raises(ConfigError, match="closed"):
        await client.recover("yan", "pw")


class MovedCluster:
    """An old 3-node configuration and a new 3-of-5 one whose manifest lists the old one."""

    def __init__(self) -> None:
        from pakr.proto.kdf import DEV_ARGON2
        from pakr.proto.manifest import NodeSet, new_manifest

        self.old = FakeCluster(3, 2)
        self.new = FakeCluster(5, 3, tenant_key=self.old.tenant_key)  # one tenant everywhere
        self.new.manifest = new_manifest(
            cluster_id="moved",
            nodes=self.new.manifest.nodes,
            threshold=3,
            argon2=DEV_ARGON2,
            dev=True,
            previous_configurations=[NodeSet(2, self.old.manifest.nodes)],
        )
        self.transports = {**self.old._by_id, **self.new._by_id}

    def client(self) -> Any:
        from pakr._async_client import AsyncClient

        return AsyncClient(
            self.new.manifest,
            tenant=TENANT,
            token_provider=self.old.token_provider(),
            transport_factory=lambda node, manifest: self.transports[node.node_id],
            deadline=2.0,
        )


async def test_recovery_from_a_previous_configuration_migrates_the_user() -> None:
    moved = MovedCluster()
    async with moved.old.async_client() as old_client:
        await old_client.register("yuri", "pw", SECRET, max_guesses=6)
    async with moved.client() as client:
        assert await client.recover("yuri", "pw") == SECRET
        user = moved.new.user("yuri")
        for node in moved.new.nodes:  # migrated: registered on every current node
            record = node.users[user].committed
            assert record is not None and record.max_guesses == 6
        for transport in moved.old.transports:
            transport.faults.down = True  # the old cluster is gone: still recoverable
        assert await client.recover("yuri", "pw") == SECRET


async def test_a_deleted_user_is_not_resurrected_from_a_previous_configuration() -> None:
    moved = MovedCluster()
    async with moved.old.async_client() as old_client:
        await old_client.register("zoe", "pw", SECRET)
    async with moved.client() as client:
        assert await client.recover("zoe", "pw") == SECRET  # migrates
        await client.delete("zoe")  # deletes on the current nodes only
        with pytest.raises(NotRegistered):
            await client.recover("zoe", "pw")
    # the old cluster served the one recovery that migrated (t evaluations), then never again
    assert sum(t.calls["recover2"] for t in moved.old.transports) == moved.old.manifest.threshold


async def test_endless_conflicts_give_up_after_a_bounded_number_of_rounds() -> None:
    from pakr._operations.register import MAX_CONFLICT_RETRIES
    from pakr.proto.errors import Conflict

    cluster = FakeCluster(3, 2)
    for transport in cluster.transports:
        transport.faults.refuse["register2"] = NodeRefusal(ErrorKind.CONFLICT, "raced")
    async with cluster.async_client() as client:
        with pytest.raises(Conflict, match="try again"):
            await client.register("abe", "pw", SECRET)
    for transport in cluster.transports:
        assert transport.calls["register1"] == MAX_CONFLICT_RETRIES
        assert transport.calls["register3"] == 0


async def test_status_of_a_locked_out_user_says_so_consistently() -> None:
    """Issue 17 item 2: a locked-out user is reported as locked out, on the whole and per
    node, never "registered, 0 left" beside nodes that all say "no version"; the CLI text
    and recovery agree (LockedOut)."""
    from pakr.coordinator.user_cli import _status_text
    from pakr.proto.errors import LockedOut

    cluster = FakeCluster(3, 2)
    async with cluster.async_client() as client:
        await client.register("yolanda", "pw", SECRET, max_guesses=2)
        for _ in range(2):
            with pytest.raises(InvalidPassword):
                await client.recover("yolanda", "bad")
        with pytest.raises(LockedOut):
            await client.recover("yolanda", "pw")
        report = await client.status("yolanda")
    assert report.registered is True and report.locked_out
    assert report.guesses_remaining == 0 and report.version is not None
    # more than n - t nodes locked (the certain rule); a node never asked keeps its count
    assert sum(n.locked for n in report.nodes) >= 2
    assert all(n.locked for n in report.nodes if n.guesses_remaining == 0)
    text = _status_text(report)
    assert text.splitlines()[0] == (
        "user 'yolanda': locked out (too many wrong passwords; register anew)"
    )
    assert text.count("locked out") >= 3
