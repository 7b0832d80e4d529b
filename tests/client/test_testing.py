"""``pakr.testing`` as an application's test suite uses it, and the SDK behaviour it exposes.

The first tests moved here from the live-cluster module (tests/client/test_sdk_cluster.py):
they test what the SDK decides (counting, t-of-n, naming a liar), which needs no node
processes; the node's own side of each is tested against real processes in tests/node and
tests/security.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import pakr
from pakr.proto.errors import ErrorKind
from pakr.proto.messages import UserStatus
from pakr.testing import FakeCluster

SECRET = bytes(range(64))


def test_wrong_password_counts_then_lockout_even_with_the_right_one() -> None:
    with FakeCluster(n=5, t=3) as cluster:
        client = cluster.client()
        client.register("carol", "right", SECRET, max_guesses=3)
        for left in (2, 1, 0):
            with pytest.raises(pakr.InvalidPassword) as info:
                client.recover("carol", "wrong")
            assert info.value.guesses_remaining == left
        with pytest.raises(pakr.InvalidPassword) as info:
            client.recover("carol", "right")
        assert info.value.guesses_remaining == 0
        cluster.advance(3600)  # past the last attempt's grace: the nodes erase the shares
        with pytest.raises(pakr.LockedOut):
            client.recover("carol", "right")
        assert isinstance(info.value, pakr.PermanentError)


def test_recover_with_n_minus_t_down_and_unavailable_with_one_more() -> None:
    with FakeCluster(n=5, t=3) as cluster:
        client = cluster.client()
        client.register("dave", "pw", SECRET)
        cluster.take_down(1, 2)
        assert client.recover("dave", "pw") == SECRET
        cluster.take_down(3)
        with pytest.raises(pakr.ClusterUnavailable) as info:
            client.recover("dave", "pw")
        assert isinstance(info.value, pakr.TransientError)
        names = {cluster.node(i).ref.name for i in (1, 2, 3)}
        assert names <= set(info.value.reasons)
        for name in names:
            assert name in str(info.value)
        cluster.bring_up()
        assert client.recover("dave", "pw") == SECRET  # everyone back


def test_forged_evaluation_is_named_and_honest_nodes_still_recover(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeCluster(n=5, t=3) as cluster:
        client = cluster.client()
        client.register("erin", "pw", SECRET)
        liar = cluster.node(4).ref.name

        def lure_and_forge(rpc: str, reply: Any) -> Any:  # asked first, then lies
            reply = pakr.testing.lie_rewrite("guesses")(rpc, reply)
            return pakr.testing.lie_rewrite("evaluation")(rpc, reply)

        cluster.make_liar(4, lure_and_forge)
        with caplog.at_level(logging.WARNING, logger="pakr"):
            assert client.recover("erin", "pw") == SECRET
        assert liar in caplog.text
        cluster.take_down(1, 2)
        with pytest.raises(pakr.ProtocolError) as info:
            client.recover("erin", "pw")
        assert info.value.nodes == [liar]


def test_two_of_three() -> None:
    with FakeCluster(n=3, t=2) as cluster:
        client = cluster.client()
        client.register("frank", "pw", SECRET)
        cluster.take_down(2)
        assert client.recover("frank", "pw") == SECRET
        cluster.bring_up(2)
        status = client.status("frank")
        assert status.registered is True and len(status.nodes) == 3


@pytest.mark.parametrize("lie", ["evaluation", "share"])
def test_every_named_lie_is_caught_and_never_returns_a_wrong_secret(lie: str) -> None:
    with FakeCluster(n=3, t=2) as cluster:
        client = cluster.client()
        client.register("gil", "pw", SECRET)
        for index in (1, 2, 3):
            cluster.make_liar(index, lie)  # type: ignore[arg-type]
        with pytest.raises(pakr.ProtocolError):
            client.recover("gil", "pw")
        cluster.heal()
        assert client.recover("gil", "pw") == SECRET


def test_status_lies_cost_no_secret() -> None:
    """One node claiming "locked" or "no version" is outvoted; a lure is merely asked first."""
    with FakeCluster(n=5, t=3) as cluster:
        client = cluster.client()
        client.register("hal", "pw", SECRET)
        cluster.make_liar(1, "locked")
        cluster.make_liar(2, "no-version")
        cluster.make_liar(3, "guesses")
        assert client.recover("hal", "pw") == SECRET


def test_transient_failures_are_retried_and_refusals_typed() -> None:
    with FakeCluster(n=3, t=2) as cluster:
        client = cluster.client()
        cluster.fail_next(1, "register1", times=2)
        client.register("ida", "pw", SECRET)  # Register1 is retried inside the deadline
        assert cluster.transport(1).calls["register1"] == 3
        for index in (1, 2, 3):
            cluster.refuse(index, "recover1", ErrorKind.RATE_LIMITED)
        with pytest.raises(pakr.RateLimited) as info:
            client.recover("ida", "pw")
        assert isinstance(info.value, pakr.TransientError)
        cluster.heal()
        assert client.recover("ida", "pw") == SECRET


def test_a_slow_node_times_out_and_the_others_answer() -> None:
    with FakeCluster(n=3, t=2) as cluster:
        client = cluster.client(deadline=0.5)
        client.register("jo", "pw", SECRET)
        cluster.slow_down(1, 30.0)
        assert client.recover("jo", "pw") == SECRET
        cluster.slow_down(2, 30.0)
        with pytest.raises(pakr.ClusterUnavailable) as info:
            client.recover("jo", "pw")
        assert "deadline" in str(info.value)


def test_a_login_resets_the_guesses_counted_elsewhere() -> None:
    """Recover1's reset nonces and ResetGuesses work: after a login, no node counts a
    guess, not even one that counted the wrong guess and then did not release its share."""
    with FakeCluster(n=5, t=3) as cluster:
        client = cluster.client()
        client.register("kim", "pw", SECRET, max_guesses=5)
        with pytest.raises(pakr.InvalidPassword):
            client.recover("kim", "wrong")
        counted = [i for i, c in cluster.guess_counts("kim").items() if c]
        assert len(counted) == 3  # t nodes evaluate, the same ones every time
        cluster.fail_next(counted[0], "recover2")  # a spare releases instead of it
        assert client.recover("kim", "pw") == SECRET
        assert set(cluster.guess_counts("kim").values()) == {0}
        assert cluster.calls("reset_guesses") >= 1


async def test_the_async_face_and_the_audit_log() -> None:
    cluster = FakeCluster(n=3, t=2)
    async with cluster.async_client() as client:
        await client.register("lu", "pw", SECRET)
        assert await client.recover("lu", "pw") == SECRET
        page = await client.audit("lu")
    ops = {event.op for event in page.events}
    assert {"registered", "guess_used", "share_released"} <= ops


def test_tokens_are_checked_like_a_node_does() -> None:
    with FakeCluster(n=3, t=2) as cluster, FakeCluster(n=3, t=2) as stranger:
        client = cluster.client(token_provider=stranger.token_provider())
        with pytest.raises(pakr.InvalidAuth):
            client.register("mo", "pw", SECRET)
        assert all(not node.users for node in cluster.nodes)


def test_a_bad_node_index_is_a_config_error() -> None:
    with FakeCluster(n=3, t=2) as cluster, pytest.raises(pakr.ConfigError, match=r"1\.\.3"):
        cluster.take_down(4)


def test_a_custom_rewrite_sees_every_reply() -> None:
    seen: list[str] = []

    def spy(rpc: str, reply: Any) -> Any:
        seen.append(rpc)
        return reply

    with FakeCluster(n=3, t=2) as cluster:
        cluster.make_liar(2, spy)
        client = cluster.client()
        client.register("ned", "pw", SECRET)
        assert client.recover("ned", "pw") == SECRET
    assert "register1" in seen and "recover1" in seen
    assert isinstance(UserStatus(), UserStatus)
