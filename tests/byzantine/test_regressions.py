"""Issue 12 regressions reproduced on the wire: real node processes behind lying proxies.

Each test reproduces one attack from the review exactly and fails on the code before the
fix (finding 1: every right-password recovery failed and the honest nodes locked; finding 2:
``InvalidPassword(0)`` for a live secret; finding 3: the liar asked first by every recovery).
"""

from __future__ import annotations

import logging
import uuid

import pytest

import pakr
from tests.byzantine.harness import PASSWORD, SECRET, Liars, accusations
from tests.byzantine.lies import LURE, STALL
from tests.byzantine.proxy import Lie
from tests.security.sec_live import guess_counts

pytestmark = pytest.mark.timeout(300)

DISGUISED = Lie(
    "Recover2.Z=identity-disguised",
    rewrite=lambda msg: setattr(msg, "evaluated_element", bytes(31) + b"\x80"),
)


@pytest.fixture(scope="module")
def five(module_local_cluster: pytest.FixtureRequest) -> Liars:  # type: ignore[type-arg]
    liars = Liars(module_local_cluster(nodes=5, threshold=3))  # type: ignore[operator]
    yield liars  # type: ignore[misc]
    liars.close()


def _register(liars: Liars) -> str:
    user = f"reg-{uuid.uuid4().hex[:10]}"
    liars.honest()
    with liars.client() as c:
        c.register(user, PASSWORD, SECRET)
    return user


def test_finding1_disguised_identity_from_a_lured_node(five: Liars) -> None:
    """Z_i = bytes(31) + 0x80 from a node claiming one guess left: before the fix every
    right-password recovery raised an unnamed ProtocolError, spent a guess at the honest
    nodes, and after max_guesses plus the grace they locked and erased the secret."""
    user = _register(five)
    five.set({2: {"Recover1": LURE, "Recover2": DISGUISED}})
    for _ in range(4):  # more than the review's three attempts
        with accusations() as accused, five.client() as c:  # a fresh client each time
            assert c.recover(user, PASSWORD) == SECRET
        assert accused.named(five.names) == {2}, accused.texts
    counts = guess_counts(five.cluster, user)
    assert all(counts[i] == 0 for i in (1, 3, 4, 5)), counts  # refunded: nothing locks
    five.honest()
    with five.client() as c:
        assert c.recover(user, PASSWORD) == SECRET


def test_finding2_one_false_locked_and_two_late_honest_nodes(five: Liars) -> None:
    """One node claims "locked", two honest nodes answer Recover1 after the cutoff: before the
    fix ``InvalidPassword(0)`` for a secret four nodes hold."""
    user = _register(five)
    locked = Lie(
        "Recover1.locked",
        rewrite=lambda msg: (
            setattr(msg.status.committed, "locked", True),
            setattr(msg.status.committed, "guesses_remaining", 0),
        ),
    )
    late = Lie("Recover1.stall", stall=STALL)
    five.set({1: {"Recover1": locked}, 4: {"Recover1": late}, 5: {"Recover1": late}})
    with five.client() as c:
        assert c.recover(user, PASSWORD) == SECRET


def test_finding2_lockout_only_when_certain(five: Liars) -> None:
    """Three "locked" answers of five (> n - t) is certain: ``LockedOut``, exit code 8; two
    "locked" answers plus an unreachable node is not: ``ClusterUnavailable``."""
    from pakr.coordinator.cli import ExitCode, exit_code_for

    user = _register(five)
    locked = Lie(
        "Recover1.locked",
        rewrite=lambda msg: (
            setattr(msg.status.committed, "locked", True),
            setattr(msg.status.committed, "guesses_remaining", 0),
        ),
    )
    hang = Lie("Recover1.hang", stall=30.0, before=True)
    five.set({1: {"Recover1": locked}, 2: {"Recover1": locked}, 3: {"Recover1": hang}})
    with five.client(deadline=1.0) as c, pytest.raises(pakr.ClusterUnavailable):
        c.recover(user, PASSWORD)
    five.set({i: {"Recover1": locked} for i in (1, 2, 3)})
    with five.client() as c, pytest.raises(pakr.LockedOut) as info:
        c.recover(user, PASSWORD)
    assert info.value.guesses_remaining == 0 and isinstance(info.value, pakr.InvalidPassword)
    assert exit_code_for(info.value) == ExitCode.LOCKED_OUT
    five.honest()


def test_finding3_a_set_aside_node_is_asked_last(
    five: Liars, caplog: pytest.LogCaptureFixture
) -> None:
    """A node that lies about its guess count to be asked first, then forges its evaluation,
    is asked first once; the same client then asks it last (it is not asked at all when t
    honest nodes answer), so its claim costs no further attempt, time or guess."""
    user = _register(five)
    five.set({3: {"Recover1": LURE, "Recover2": DISGUISED}})
    with five.client() as c, caplog.at_level(logging.WARNING, logger="pakr"):
        assert c.recover(user, PASSWORD) == SECRET
        assert five.proxies[3].calls.get("Recover2") == 1
        for _ in range(3):
            assert c.recover(user, PASSWORD) == SECRET
        assert five.proxies[3].calls.get("Recover2") == 1  # never asked again
    five.honest()


def test_a_node_late_in_recover1_is_a_last_resort_spare(five: Liars) -> None:
    """Found by the matrix's hypothesis run: one liar hides (no guesses left), another hangs
    in Recover2, and the last honest node answered Recover1 too late to be in the choice.
    Recovery used to run out of nodes; it now asks the node it did not hear from."""
    user = _register(five)
    no_guesses = Lie(
        "Recover1.guesses=0",
        rewrite=lambda msg: setattr(msg.status.committed, "guesses_remaining", 0),
    )
    five.set(
        {
            1: {"Recover1": no_guesses},
            4: {"Recover2": Lie("Recover2.hang", stall=30.0, before=True)},
            5: {"Recover1": Lie("Recover1.stall", stall=1.0)},
        }
    )
    with five.client() as c:
        assert c.recover(user, PASSWORD) == SECRET
    five.honest()
