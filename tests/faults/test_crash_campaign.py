"""Fault campaign: kill -9 a node at every crash point of register, change password, recover
and delete, restart it, and check the invariants (docs/protocol.md §8 properties 4 and 6).

Crash points are the node's own (``PAKR_CRASH_AT=<rpc>.<before_commit|after_commit>``, the
node SIGKILLs itself with the store transaction not yet run / just committed). For every
(rpc, point) a real SDK operation runs against a local cluster of node processes while one
node carries the armed crash point; the test requires that the crash really fired, restarts
the node, and then checks:

* no committed secret is lost: the password in force (old or new, whichever the outcome
  says may be in force) recovers the secret that belongs to it, never another one;
* no counted guess is un-counted: a guess the node committed (``after_commit``) is still
  counted after the restart, and one it had not committed was never evaluated;
* the user can always recover with the password in force, and the interrupted operation can
  simply be run again.

Bounded form (``make test``): a 2-of-3 cluster, node 1 crashes, each of the 10 crash points
once, the register points both in a first registration and in a password change (14 runs).
Long form (``PAKR_FAULTS=long``, ``make faults``): a 3-of-5 cluster as well, three different
nodes as the crasher, and the recovery points also on their 2nd hit (108 runs).
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import pakr
from pakr.coordinator.localcluster import LocalCluster
from tests.cluster.cluster_helpers import user_asking
from tests.conftest import ClusterFactory

LONG = os.environ.get("PAKR_FAULTS") == "long"
RPCS = ("register2", "register3", "recover2", "recover3", "delete")
POINTS = ("before_commit", "after_commit")
DEADLINE = 2.0

pytestmark = pytest.mark.timeout(1800 if LONG else 300)

SHAPES = [(3, 2), (5, 3)] if LONG else [(3, 2)]
CRASHERS = {3: (1, 2, 3), 5: (1, 3, 5)} if LONG else {3: (1,), 5: (1,)}
HITS = (1, 2) if LONG else (1,)

TALLY: dict[str, int] = {"runs": 0, "crashes": 0, "secrets_lost": 0, "guesses_uncounted": 0}


def _ops(rpc: str) -> tuple[str, ...]:
    """The SDK operations that reach ``rpc``: a first registration or a password change for
    the register steps; a wrong (recover2) or right (recover3) guess; a delete."""
    return ("first", "change") if rpc.startswith("register") else (rpc,)


def _cases() -> list[tuple[int, int, int, str, str, str, int]]:
    return [
        (n, t, crasher, rpc, point, op, hit)
        for (n, t) in SHAPES
        for crasher in CRASHERS[n]
        for rpc, point in itertools.product(RPCS, POINTS)
        for op in _ops(rpc)
        for hit in (HITS if rpc.startswith("recover") else (1,))
    ]


@pytest.fixture(scope="module")
def clusters(module_local_cluster: ClusterFactory) -> Iterator[dict[int, LocalCluster]]:
    made: dict[int, LocalCluster] = {}

    def get(n: int, t: int) -> LocalCluster:
        if n not in made:
            made[n] = module_local_cluster(nodes=n, threshold=t)
        return made[n]

    yield _Lazy(get)  # type: ignore[misc]
    print(
        f"\nfault campaign: {TALLY['runs']} runs, {TALLY['crashes']} crashes fired,"
        f" secrets lost {TALLY['secrets_lost']}, guesses un-counted {TALLY['guesses_uncounted']}"
    )


class _Lazy(dict):  # type: ignore[type-arg]
    def __init__(self, get) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self._get = get

    def __call__(self, n: int, t: int) -> LocalCluster:
        return self._get(n, t)  # type: ignore[no-any-return]


def client(cluster: LocalCluster) -> pakr.Client:
    return pakr.Client.from_manifest(
        cluster.manifest_path,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
        deadline=DEADLINE,
    )


def guess_counts(cluster: LocalCluster, user: str) -> dict[int, int | None]:
    """Each node's durable guess count of the user's committed version (None: no version)."""
    counts: dict[int, int | None] = {}
    for node in cluster.nodes:
        conn = sqlite3.connect(f"file:{node.dir / 'node.db'}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT guess_count FROM versions WHERE tenant = ? AND user_id = ?"
                " AND slot = 'committed'",
                (cluster.tenant, user),
            ).fetchone()
        finally:
            conn.close()
        counts[node.index] = None if row is None else int(row[0])
    return counts


@dataclass
class Outcome:
    error: BaseException | None


def run_op(fn) -> Outcome:  # type: ignore[no-untyped-def]
    try:
        fn()
    except pakr.PakrError as exc:
        return Outcome(exc)
    return Outcome(None)


def recovers(cluster: LocalCluster, user: str, password: str) -> bytes | None:
    """The secret ``password`` recovers, or None if it is not (or no longer) in force."""
    with client(cluster) as c:
        try:
            return c.recover(user, password)
        except (pakr.InvalidPassword, pakr.NotRegistered):
            return None


@pytest.mark.parametrize(("n", "t", "crasher", "rpc", "point", "op", "hit"), _cases())
def test_crash_point(
    clusters,  # type: ignore[no-untyped-def]
    n: int,
    t: int,
    crasher: int,
    rpc: str,
    point: str,
    op: str,
    hit: int,
) -> None:
    cluster: LocalCluster = clusters(n, t)
    # a user whose recoveries ask the crasher (the client asks t nodes, in an order per user)
    user = user_asking(
        cluster.manifest(), cluster.tenant, f"crash-{n}-{crasher}-{rpc}-{point}-{op}-{hit}",
        ask={crasher},
    )  # fmt: skip
    old, new = "old password", "new password"
    s_old, s_new = b"old secret " + os.urandom(8), b"new secret " + os.urandom(8)
    if op != "first":
        with client(cluster) as c:
            c.register(user, old, s_old)
    # Arm the crash point on one node (a restart: the point is read from the environment).
    cluster.kill_node(crasher)
    cluster.start_node(
        crasher, env={"PAKR_CRASH_AT": f"{rpc}.{point}", "PAKR_CRASH_AFTER": str(hit)}
    )
    before = guess_counts(cluster, user)
    wrong = rpc == "recover2"  # a wrong guess: it must stay counted wherever it committed
    with client(cluster) as c:
        if op == "first":
            outcome = run_op(lambda: c.register(user, new, s_new))
        elif op == "change":
            outcome = run_op(lambda: c.change_password(user, old, new))
            s_new = s_old  # change_password keeps the secret
        elif rpc in ("recover2", "recover3"):
            if hit == 2:
                c.recover(user, old)  # the first hit passes the armed point harmlessly
            outcome = run_op(lambda: c.recover(user, "wrong" if wrong else old))
        else:
            outcome = run_op(lambda: c.delete(user))
    TALLY["runs"] += 1
    code = cluster.wait_exit(crasher, timeout=15.0)
    assert code == -signal.SIGKILL, f"the crash point {rpc}.{point} did not fire (exit {code})"
    TALLY["crashes"] += 1
    after_crash = guess_counts(cluster, user)
    cluster.start_node(crasher)
    after_restart = guess_counts(cluster, user)
    assert after_restart == after_crash, "a restart changed the durable state"

    # -- guesses: what a node committed stays counted; what it did not, it never evaluated.
    if rpc == "recover2":
        if not isinstance(outcome.error, pakr.InvalidPassword | pakr.ClusterUnavailable):
            raise AssertionError(f"a wrong guess ended with {outcome.error!r}")
        base = before[crasher] or 0
        expected = base + (1 if point == "after_commit" else 0)
        if after_restart[crasher] != expected:
            TALLY["guesses_uncounted"] += 1
        assert after_restart[crasher] == expected, (before, after_restart)
        for index, count in after_restart.items():
            if index != crasher:
                assert count is not None and count >= (before[index] or 0)
    if rpc == "recover3":
        assert outcome.error is None, f"recovery with t live nodes failed: {outcome.error!r}"
        # before_commit: the guess counted at Recover2 stays; after_commit: it was reset.
        assert after_restart[crasher] == (0 if point == "after_commit" else 1)

    # -- secrets: the password in force recovers its own secret; nothing is lost.
    if rpc == "delete":
        got = recovers(cluster, user, old)
        if outcome.error is None:
            assert got is None, "a successful delete left the secret recoverable"
        else:
            assert got in (None, s_old)
        with client(cluster) as c:
            # Running the interrupted delete again completes it; when the first one had
            # reached every node there is nothing left, and the second says so.
            try:
                c.delete(user)
            except pakr.NotRegistered:
                assert got is None
        assert recovers(cluster, user, old) is None
        return
    if op == "first":
        # Nothing was committed before: the new secret is either in force or not there at
        # all (never half there), and registering again always works.
        got_new = recovers(cluster, user, new)
        assert got_new in (None, s_new)
        if outcome.error is None:
            assert got_new == s_new, "register succeeded but its password fails"
        with client(cluster) as c:
            c.register(user, new, s_new, if_exists="replace")
        assert recovers(cluster, user, new) == s_new
        return
    if rpc in ("register2", "register3"):
        got_new = recovers(cluster, user, new)
        got_old = None if got_new is not None else recovers(cluster, user, old)
        lost = got_new is None and got_old is None
        if lost:
            TALLY["secrets_lost"] += 1
        assert not lost, f"neither password recovers after a crash at {rpc}.{point}"
        assert got_new in (None, s_new) and got_old in (None, s_old)
        if outcome.error is None:
            assert got_new == s_new, "change_password succeeded but the new password fails"
        if rpc == "register2":
            assert got_old == s_old, "the old password must stay in force before any commit"
        in_force = new if got_new is not None else old
        with client(cluster) as c:  # the interrupted change can be completed by running it again
            if in_force == old:
                c.change_password(user, old, new)
        assert recovers(cluster, user, new) == s_new
        return
    got = recovers(cluster, user, old)
    if got is None:
        TALLY["secrets_lost"] += 1
    assert got == s_old, f"the password in force no longer recovers after {rpc}.{point}"
