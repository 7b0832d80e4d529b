"""Byte compatibility on a live cluster: the Python SDK and the TypeScript SDK (Node.js, gRPC
with pinned certificates) register, recover and change passwords for each other's users, and
report wrong passwords and lockouts the same way.

One 3-of-5 local cluster (r = 4; real node processes, TLS) is shared by the module; each test uses
its own users. The TypeScript side runs js/test/crosslang/pakr-js.ts, its secrets on stdin.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import pakr
from pakr import grpc_transport
from pakr.coordinator.localcluster import LocalCluster
from pakr.proto.manifest import OperatorKey
from pakr.proto.messages import UserRef, UserStatus
from tests.cluster.cluster_helpers import user_asking
from tests.conftest import ClusterFactory
from tests.crosslang.jsrunner import require_js, run_node

pytestmark = pytest.mark.timeout(300)

DRIVER = "test/crosslang/pakr-js.ts"


@dataclass
class Pair:
    """Both SDKs pointed at one cluster."""

    request: dict[str, Any]
    python: pakr.Client
    cluster: LocalCluster

    def ts(self, op: str, user_id: str, **fields: Any) -> dict[str, Any]:
        return run_node(DRIVER, {**self.request, "op": op, "user_id": user_id, **fields})


@pytest.fixture(scope="module")
def pair(module_local_cluster: ClusterFactory) -> Iterator[Pair]:
    require_js()
    cluster = module_local_cluster(nodes=5, threshold=3, register_threshold=4)
    request = {
        "manifest": str(cluster.manifest_path),
        "operator_key": cluster.operator_public_key(),
        "tenant": cluster.tenant,
        "tenant_key": str(cluster.tenant_key_path),
        "deadline": 5,
    }
    with pakr.Client.from_manifest(
        cluster.manifest_path,
        operator_key=cluster.operator_public_key(),
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
    ) as client:
        yield Pair(request, client, cluster)


def test_python_registers_typescript_recovers(pair: Pair) -> None:
    secret = os.urandom(32)
    pair.python.register("py-to-ts", "correct horse", secret)
    answer = pair.ts("recover", "py-to-ts", password="correct horse")
    assert answer == {"ok": True, "secret_hex": secret.hex(), "warnings": []}


def test_typescript_registers_python_recovers(pair: Pair) -> None:
    secret = os.urandom(48)
    answer = pair.ts("register", "ts-to-py", password="battery stäple", secret_hex=secret.hex())
    assert answer["ok"] is True and len(answer["version"]) == 32
    # NFKC on both sides: a decomposed "ä" is the same password.
    assert pair.python.recover("ts-to-py", "battery sta\u0308ple") == secret
    again = pair.ts("register", "ts-to-py", password="x", secret_hex="00")
    assert again["ok"] is False and again["error"]["name"] == "AlreadyRegistered"


def test_password_changed_in_one_used_in_the_other(pair: Pair) -> None:
    secret = os.urandom(16)
    pair.python.register("changer", "first password", secret)
    assert pair.ts("change_password", "changer", password="first password",
                   new_password="second password") == {"ok": True}  # fmt: skip
    assert pair.python.recover("changer", "second password") == secret
    with pytest.raises(pakr.InvalidPassword):
        pair.python.recover("changer", "first password")
    pair.python.change_password("changer", "second password", "third password")
    assert pair.ts("recover", "changer", password="third password")["secret_hex"] == secret.hex()
    wrong = pair.ts("recover", "changer", password="second password")
    assert wrong["error"]["name"] in ("PasswordMismatch", "InvalidPassword")


def test_wrong_guesses_and_lockout_reported_alike(pair: Pair) -> None:
    secret = os.urandom(32)
    pair.python.register("guesser", "right password", secret, max_guesses=4)
    seen: list[tuple[str, int]] = []
    for turn in range(4):  # alternate SDKs: each reports what the other left
        if turn % 2 == 0:
            answer = pair.ts("recover", "guesser", password=f"wrong {turn}")
            error = answer["error"]
            seen.append(("ts", int(error["guesses_remaining"])))
        else:
            with pytest.raises(pakr.InvalidPassword) as caught:
                pair.python.recover("guesser", f"wrong {turn}")
            seen.append(("py", caught.value.guesses_remaining))
    assert [left for _, left in seen] == [3, 2, 1, 0], seen
    with pytest.raises(pakr.LockedOut):
        pair.python.recover("guesser", "right password")
    locked = pair.ts("recover", "guesser", password="right password")
    assert locked["ok"] is False and locked["error"]["name"] == "LockedOut"
    status = pair.ts("status", "guesser")
    report = pair.python.status("guesser")
    assert status["locked_out"] is report.locked_out is True
    assert status["guesses_remaining"] == report.guesses_remaining == 0


def test_delete_in_typescript_seen_by_python(pair: Pair) -> None:
    pair.python.register("deleted", "pw one", b"gone soon")
    assert pair.ts("delete", "deleted") == {"ok": True}
    with pytest.raises(pakr.NotRegistered):
        pair.python.recover("deleted", "pw one")
    missing = pair.ts("recover", "deleted", password="pw one")
    assert missing["error"]["name"] == "NotRegistered"


def test_typescript_names_lying_nodes(pair: Pair) -> None:
    """Lazy verification with fallback: evaluations that do not combine are verified one by
    one, the liars set aside (and named) and replaced by spare nodes in the same attempt; too
    many liars is a ProtocolError naming them, never a wrong secret. The user is one whose
    recoveries ask nodes 1-3 first (by the Python SDK's own order, which the TS SDK shares)."""
    secret = os.urandom(32)
    user = user_asking(pair.cluster.manifest(), pair.cluster.tenant, "lied-to", ask={1, 2, 3})
    pair.python.register(user, "the password", secret)
    two = pair.ts("recover", user, password="the password", lying_nodes=[1, 2])
    assert two["ok"] is True and two["secret_hex"] == secret.hex()
    named = " ".join(two["warnings"])
    assert "node1(" in named and "node2(" in named, two["warnings"]
    three = pair.ts("recover", user, password="the password", lying_nodes=[1, 2, 3])
    assert three["ok"] is False and three["error"]["name"] in ("ProtocolError", "TooFewValid")
    assert sorted(n.split("(")[0] for n in three["error"]["nodes"]) == ["node1", "node2", "node3"]
    assert pair.python.recover(user, "the password") == secret


def test_typescript_over_the_web_listeners(pair: Pair) -> None:
    """The browser transport (Connect over each node's web listener, run here from Node.js):
    a recovery, and a node's typed refusal read from the error trailer (INVALID_AUTH for a
    token that is no token), as over gRPC."""
    secret = os.urandom(32)
    pair.python.register("web-user", "web password", secret)
    answer = pair.ts("recover", "web-user", password="web password", transport="web")
    assert answer["ok"] is True and answer["secret_hex"] == secret.hex()
    for transport in ("web", "grpc"):
        refused = pair.ts(
            "recover", "web-user", password="web password", transport=transport, token="garbage"
        )
        assert refused["error"]["name"] == "InvalidAuth", (transport, refused)
        assert "rejected the access token" in refused["error"]["message"]


def test_token_provider_failure_and_operator_pin(pair: Pair) -> None:
    failed = pair.ts("status", "anyone", token="throw")
    assert failed["error"]["name"] == "InvalidAuth"
    assert "token provider failed" in failed["error"]["message"]
    assert "backend is down" not in failed["error"]["message"]  # the app's text stays out
    stranger = OperatorKey.generate().public_key_text
    wrong_pin = run_node(DRIVER, {**pair.request, "operator_key": stranger, "op": "status",
                                  "user_id": "anyone"})  # fmt: skip
    assert wrong_pin["error"]["name"] == "ConfigError"


def test_audit_read_alike(pair: Pair) -> None:
    pair.python.register("audited", "audit password", b"audited secret")
    assert pair.ts("recover", "audited", password="audit password")["ok"] is True
    ts_page = pair.ts("audit", "audited")
    py_page = pair.python.audit("audited", limit=1000)
    py_ops = sorted([e.node_index, e.op, e.outcome] for e in py_page.events)
    assert sorted(ts_page["ops"]) == py_ops
    assert {op for _, op, _ in ts_page["ops"]} >= {"registered", "guess_used", "share_released"}


def test_typescript_login_resets_guess_counts(pair: Pair) -> None:
    """A successful TS login refunds the wrong guesses at every holder: the releasing nodes by
    Recover3, the others by ResetGuesses sent alongside it (as the Python SDK does)."""
    pair.python.register("resetter", "good password", b"kept", max_guesses=5)
    for attempt in range(2):
        wrong = pair.ts("recover", "resetter", password=f"bad {attempt}")
        assert wrong["error"]["guesses_remaining"] == 4 - attempt
    before = pair.python.status("resetter")
    assert sorted(n.guesses_remaining or 0 for n in before.nodes) == [3, 3, 3, 5, 5]
    assert pair.ts("recover", "resetter", password="good password")["ok"] is True
    after = pair.python.status("resetter")
    assert [n.guesses_remaining for n in after.nodes] == [5] * 5


def test_typescript_with_stalled_and_dead_nodes(pair: Pair) -> None:
    """A stalled node (SIGSTOP) among the first asked costs a hedge, not the deadline: the
    recovery still completes within a 3 s deadline per step. With too few nodes alive the TS
    SDK says ClusterUnavailable and names each node with its reason."""
    cluster = pair.cluster
    secret = os.urandom(32)
    user = user_asking(cluster.manifest(), cluster.tenant, "stalled", ask={1, 2, 3})
    pair.python.register(user, "stall password", secret)
    cluster.kill_node(1, signal.SIGSTOP)
    try:
        answer = pair.ts("recover", user, password="stall password", deadline=3)
        assert answer["ok"] is True and answer["secret_hex"] == secret.hex()
        cluster.kill_node(4)
        cluster.kill_node(5)
        down = pair.ts("recover", user, password="stall password", deadline=2)
        assert down["error"]["name"] == "ClusterUnavailable", down
        for index in (1, 4, 5):
            assert f"node{index}(" in down["error"]["message"], down
    finally:
        cluster.kill_node(1, signal.SIGCONT)
        cluster.start_node(4)
        cluster.start_node(5)
    assert pair.python.recover(user, "stall password") == secret


def test_typescript_login_fills_a_missing_copy(pair: Pair) -> None:
    """A node that was down when the user registered (r = 4 of 5 committed without it) gets
    its copy from the next TS login: one compare-and-swap re-registration, as in Python."""
    cluster = pair.cluster
    secret = os.urandom(32)
    cluster.kill_node(5)
    try:
        first = pair.python.register("filled", "fill password", secret)
    finally:
        cluster.start_node(5)
    before = pair.python.status("filled")
    assert [n.registered for n in before.nodes] == [True, True, True, True, False]
    answer = pair.ts("recover", "filled", password="fill password")
    assert answer["ok"] is True and answer["secret_hex"] == secret.hex()
    after = pair.python.status("filled")
    assert [n.registered for n in after.nodes] == [True] * 5
    assert after.version is not None and after.version != first.version
    assert pair.python.recover("filled", "fill password") == secret


def _node_status(cluster: LocalCluster, index: int, user_id: str) -> UserStatus:
    """What node ``index`` itself reports for the user (Register1 over its own transport)."""
    manifest = cluster.manifest()
    node = manifest.nodes[index - 1]
    token = pakr.dev_token_provider(cluster.tenant_key_path)(user_id, node.id_hex)

    async def ask() -> UserStatus:
        transport = grpc_transport(node, manifest)
        try:
            return await transport.register1(UserRef(cluster.tenant, user_id), token, timeout=5)
        finally:
            await transport.close()

    return asyncio.run(ask())


def test_typescript_login_rolls_a_pending_copy_forward(pair: Pair) -> None:
    """A node that crashed before committing (it holds the version only as pending, r = 4
    committed without it) is rolled forward by the next TS login's Register3."""
    cluster = pair.cluster
    cluster.kill_node(5, signal.SIGTERM)
    cluster.start_node(5, env={"PAKR_CRASH_AT": "register3.before_commit"})
    try:
        done = pair.python.register("pending", "pending password", b"rolled")
    finally:
        cluster.kill_node(5)  # it crashed on Register3 already; make sure
        cluster.start_node(5)
    held = _node_status(cluster, 5, "pending")
    assert held.committed is None and held.pending is not None
    assert held.pending.version.hex() == done.version
    answer = pair.ts("recover", "pending", password="pending password")
    assert answer["ok"] is True and bytes.fromhex(answer["secret_hex"]) == b"rolled"
    rolled = _node_status(cluster, 5, "pending")
    assert rolled.committed is not None and rolled.committed.version.hex() == done.version
    assert rolled.pending is None
