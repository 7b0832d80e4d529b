"""The error hierarchy and docs/protocol.md §7's "most actionable" ordering, implemented once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pakr.proto import errors as e

# docs/protocol.md §7: InvalidPassword < NotRegistered < InvalidAuth < RateLimited <
# UpgradeRequired < ProtocolError < ClusterUnavailable (Conflict sits before ProtocolError:
# it is retryable by the SDK itself).
ORDERED: list[e.PakrError] = [
    e.InvalidPassword(3),
    e.NotRegistered(),
    e.InvalidAuth("token rejected"),
    e.RateLimited(2.0),
    e.UpgradeRequired("upgrade"),
    e.Conflict("concurrent registration"),
    e.ProtocolError(["node1"], "bad proof"),
    e.ClusterUnavailable({"node2": "timeout"}),
]


@pytest.mark.parametrize(("i", "j"), list(itertools.combinations(range(len(ORDERED)), 2)))
def test_pairwise_order(i: int, j: int) -> None:
    assert e.most_actionable([ORDERED[j], ORDERED[i]]) is ORDERED[i]
    assert e.most_actionable([ORDERED[i], ORDERED[j]]) is ORDERED[i]


@given(st.permutations(ORDERED))
def test_any_order_picks_invalid_password(errs: list[e.PakrError]) -> None:
    assert e.most_actionable(errs) is ORDERED[0]


def test_ties_keep_the_first_and_empty_is_a_bug() -> None:
    first, second = e.InvalidPassword(1), e.InvalidPassword(5)
    assert e.most_actionable([first, second]) is first
    with pytest.raises(ValueError):
        e.most_actionable([])


def test_everything_is_a_pakr_error() -> None:
    for err in [
        *ORDERED,
        e.WeakParameters("w"),
        e.CommitIncomplete("c"),
        e.ConfigError("x"),
        e.MalformedMessage("m"),
        e.NodeRefusal(e.ErrorKind.LOCKED, "locked"),
    ]:
        assert isinstance(err, e.PakrError)


def test_messages_are_actionable() -> None:
    assert "2 guess(es) remaining" in str(e.InvalidPassword(2))
    assert "locked out" in str(e.InvalidPassword(0))
    assert "retry after 1.5 s" in str(e.RateLimited(1.5))
    unavailable = e.ClusterUnavailable({"node4(ab)": "connection refused", "node5(cd)": "timeout"})
    assert "node4(ab): connection refused" in str(unavailable)
    assert "node5(cd): timeout" in str(unavailable)
    assert str(e.ProtocolError(["node1", "node3"], "bad DLEQ proof")) == (
        "protocol error from node1, node3: bad DLEQ proof"
    )


def test_wire_kinds_are_stable() -> None:
    # The numeric kinds are part of node.proto's contract: renumbering breaks old clients.
    assert [(k.name, k.value) for k in e.ErrorKind] == [
        ("UNSPECIFIED", 0),
        ("INVALID_REQUEST", 1),
        ("INVALID_AUTH", 2),
        ("NOT_REGISTERED", 3),
        ("NO_GUESSES", 4),
        ("BAD_UNLOCK_TAG", 5),
        ("CONFLICT", 6),
        ("RATE_LIMITED", 7),
        ("UPGRADE_REQUIRED", 8),
        ("LOCKED", 9),
        ("UNAVAILABLE", 10),
        ("INTERNAL", 11),
        ("STALE_ATTEMPT", 12),
    ]


def test_python_kinds_match_the_proto_enum() -> None:
    from pakr.proto.v1 import node_pb2 as pb

    for kind in e.ErrorKind:
        assert pb.ErrorKind.Value(f"ERROR_KIND_{kind.name}") == kind.value
    assert len(pb.ErrorKind.keys()) == len(e.ErrorKind)
