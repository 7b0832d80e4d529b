"""``pakr demo``: the whole story on a real local cluster, narrated step by step with timings.

A 5-node, 3-of-5 cluster (five OS processes, TLS, signed manifest) in a temporary directory:
register a generated key, recover it, spend a guess on a wrong password, survive two node
crashes, fail *clearly* with a third, restart the nodes and recover again, shut down.

Every step checks what it claims; the exit status is 0 only if all of them behaved as stated,
so ``make demo`` doubles as an end-to-end smoke test (tests/cluster runs it).
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from pakr.coordinator.localcluster import LocalCluster
from pakr.proto.errors import ClusterUnavailable, InvalidPassword, PakrError

if TYPE_CHECKING:
    from pakr import NodeStatus

NODES = 5
THRESHOLD = 3
USER = "alice@example.com"
PASSWORD = "correct horse battery staple"  # noqa: S105 - the demo's public example
WRONG_PASSWORD = "correct horse battery stapler"  # noqa: S105 - likewise
MAX_GUESSES = 5
CLIENT_DEADLINE = 3.0
REJOIN_TIMEOUT = 15.0

T = TypeVar("T")


class DemoFailure(PakrError):
    """A demo step did not behave as the narration says it should."""


class Narrator:
    """Prints numbered steps with their wall-clock duration."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.perf_counter()
        self.number = 0

    def say(self, text: str) -> None:
        print(f"          {text}", file=self.out, flush=True)

    def step(self, title: str, action: Callable[[], T]) -> T:
        self.number += 1
        print(f"[{self.number:>2}] {title} ...", file=self.out, flush=True)
        began = time.perf_counter()
        result = action()
        took = time.perf_counter() - began
        print(f"     ok  ({took * 1000:,.0f} ms)", file=self.out, flush=True)
        return result

    def total(self) -> float:
        return time.perf_counter() - self.started


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


def run_demo(
    directory: Path | None = None,
    keep: bool = False,
    out: TextIO = sys.stdout,
    base_port: int | None = None,
) -> int:
    """Run the story; 0 when every step behaved as stated, 1 otherwise.

    ``base_port``: node i listens on ``base_port + i`` (default: free ports).
    """
    import pakr  # the SDK; imported here so the CLI starts fast for other commands

    workdir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="pakr-"))
    narrator = Narrator(out)
    try:
        cluster = LocalCluster(
            workdir / "cluster", nodes=NODES, threshold=THRESHOLD, base_port=base_port
        )
    except PakrError:
        if directory is None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    print(f"pakr demo: a {THRESHOLD}-of-{NODES} cluster in {workdir}", file=out, flush=True)
    try:
        narrator.step(
            f"start {NODES} nodes as separate processes (TLS, signed manifest)", cluster.start
        )
        for node in cluster.nodes:
            narrator.say(f"node {node.index}  {node.address}  id {node.node_id[:12]}…")

        client = pakr.Client.from_manifest(
            cluster.manifest_path,
            tenant=cluster.tenant,
            token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
            operator_key=_operator_key(cluster),
            deadline=CLIENT_DEADLINE,
        )
        with client:
            secret = secrets.token_bytes(32)
            narrator.step(
                f"register a fresh 32-byte key for {USER} (max {MAX_GUESSES} wrong guesses)",
                lambda: client.register(USER, PASSWORD, secret, max_guesses=MAX_GUESSES),
            )
            narrator.say(f"key fingerprint {secret[:4].hex()}… (each node holds only a share)")

            def recover_ok() -> None:
                got = client.recover(USER, PASSWORD)
                _expect(got == secret, "the recovered key differs from the registered one")

            narrator.step("recover it with the right password", recover_ok)
            narrator.say("recovered key matches")

            def wrong_guess() -> int:
                try:
                    client.recover(USER, WRONG_PASSWORD)
                except InvalidPassword as error:
                    return error.guesses_remaining
                raise DemoFailure("a wrong password was accepted")

            left = narrator.step("try a wrong password", wrong_guess)
            narrator.say(f"refused: InvalidPassword, {left} guess(es) remaining")
            _expect(
                left == MAX_GUESSES - 1,
                f"expected {MAX_GUESSES - 1} guesses remaining, the cluster said {left}",
            )
            report = client.status(USER)
            counted = {n.index for n in report.nodes if n.guesses_remaining == MAX_GUESSES - 1}
            _expect(
                len(counted) == THRESHOLD,
                f"expected the {THRESHOLD} nodes asked to count the guess, got {sorted(counted)}",
            )
            narrator.say(
                f"the {THRESHOLD} nodes asked counted it (the client asks t nodes, the same ones"
                f" every time): guesses left per node {_guesses(report.nodes)}"
            )

            stale = counted & {1, 2}  # will be down when the right password resets the counts
            for index in (1, 2):
                narrator.step(f"crash node {index} (SIGKILL)", partial(_kill, cluster, index))
            narrator.step("recover with 3 of 5 nodes up", recover_ok)
            narrator.say("recovered key matches; the right password also reset the guess count")

            narrator.step("crash node 3 (SIGKILL): only 2 of 5 left", lambda: _kill(cluster, 3))

            def unavailable() -> ClusterUnavailable:
                try:
                    client.recover(USER, PASSWORD)
                except ClusterUnavailable as error:
                    return error
                raise DemoFailure("recovery with 2 of 5 nodes did not raise ClusterUnavailable")

            error = narrator.step("recover with 2 of 5 nodes up", unavailable)
            narrator.say(f"refused as it must be: ClusterUnavailable: {error.summary}")
            _expect(len(error.reasons) >= 3, f"expected 3 nodes named, got {error.reasons}")
            for name, why in sorted(error.reasons.items()):
                narrator.say(f"  {name}: {why}")

            def restart() -> None:
                for index in (1, 2, 3):
                    cluster.start_node(index, wait=False)
                cluster.wait_healthy([1, 2, 3])

            narrator.step("restart nodes 1, 2, 3 (same data directories)", restart)

            def all_back() -> str:
                # The client reconnects to a restarted node when its gRPC reconnect backoff
                # (started while the node was down) expires: poll for that, bounded.
                deadline = time.monotonic() + REJOIN_TIMEOUT
                while True:
                    try:
                        report = client.status(USER)
                    except ClusterUnavailable as error:
                        if time.monotonic() >= deadline:
                            raise
                        problem = str(error)
                    else:
                        missing = [n for n in report.nodes if not (n.reachable and n.registered)]
                        if not missing:
                            counts = {n.index: n.guesses_remaining for n in report.nodes}
                            expected = {
                                i: MAX_GUESSES - 1 if i in stale else MAX_GUESSES
                                for i in range(1, NODES + 1)
                            }
                            _expect(counts == expected, f"guesses left {counts}, not {expected}")
                            return _guesses(report.nodes)
                        problem = "; ".join(f"#{n.index}: {n.error}" for n in missing)
                    if time.monotonic() >= deadline:
                        raise DemoFailure(
                            f"nodes do not report the user after the restart: {problem}"
                        )
                    time.sleep(0.2)

            left_per_node = narrator.step("ask every node for the user's status", all_back)
            narrator.say(f"all {NODES} nodes hold the registration; guesses left {left_per_node}")
            if stale:
                who = " and ".join(map(str, sorted(stale)))
                verb = "were" if len(stale) > 1 else "was"
                narrator.say(
                    f"(node{'s' if len(stale) > 1 else ''} {who} {verb} down when the right"
                    " password reset the others)"
                )
            narrator.step("recover again with all 5 nodes", recover_ok)
            final = client.status(USER).nodes
            _expect(
                all(n.guesses_remaining == MAX_GUESSES for n in final),
                "the successful recovery did not reset the counts (the client asks the nodes"
                " with the fewest guesses left first)",
            )
            after = _guesses(final)
            narrator.say(f"recovered key matches: the restarted nodes kept their shares; {after}")
        narrator.step("shut the cluster down (SIGTERM, graceful drain)", cluster.stop)
    except (PakrError, OSError, TimeoutError) as error:
        print(f"\npakr demo FAILED at step {narrator.number}: {error}", file=out, flush=True)
        cluster.stop()
        return 1
    except BaseException:
        cluster.stop()
        raise
    finally:
        if not keep and directory is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\npakr demo: every step behaved as stated ({narrator.total():.1f} s total)", file=out)
    if keep:
        print(f"kept {workdir}", file=out)
    return 0


def _operator_key(cluster: LocalCluster) -> str:
    from pakr.proto.manifest import OperatorKey

    return OperatorKey.load(cluster.operator_key_path).public_key_text


def _guesses(nodes: Sequence[NodeStatus]) -> str:
    return " ".join(f"#{n.index}:{n.guesses_remaining}" for n in nodes)


def _kill(cluster: LocalCluster, index: int) -> None:
    if not cluster.kill_node(index):
        raise DemoFailure(f"node {index} was not running")
    _expect(cluster.node_pid(index) is None, f"node {index} survived SIGKILL")
