"""Byte compatibility on a live cluster: the Python SDK and the TypeScript SDK (Node.js, gRPC
with pinned certificates) register, recover and change passwords for each other's users, and
report wrong passwords and lockouts the same way.

One 3-of-5 local cluster (real node processes, TLS) is shared by the module; each test uses
its own users. The TypeScript side runs js/test/crosslang/pakr-js.ts, its secrets on stdin.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import pakr
from tests.conftest import ClusterFactory
from tests.crosslang.jsrunner import require_js, run_node

pytestmark = pytest.mark.timeout(300)

DRIVER = "test/crosslang/pakr-js.ts"


@dataclass
class Pair:
    """Both SDKs pointed at one cluster."""

    request: dict[str, Any]
    python: pakr.Client

    def ts(self, op: str, user_id: str, **fields: Any) -> dict[str, Any]:
        return run_node(DRIVER, {**self.request, "op": op, "user_id": user_id, **fields})


@pytest.fixture(scope="module")
def pair(module_local_cluster: ClusterFactory) -> Iterator[Pair]:
    require_js()
    cluster = module_local_cluster(nodes=5, threshold=3)
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
        yield Pair(request, client)


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
    many liars is a ProtocolError naming them, never a wrong secret."""
    secret = os.urandom(32)
    pair.python.register("lied-to", "the password", secret)
    two = pair.ts("recover", "lied-to", password="the password", lying_nodes=[1, 2])
    assert two["ok"] is True and two["secret_hex"] == secret.hex()
    named = " ".join(two["warnings"])
    assert "node1(" in named and "node2(" in named, two["warnings"]
    three = pair.ts("recover", "lied-to", password="the password", lying_nodes=[1, 2, 3])
    assert three["ok"] is False and three["error"]["name"] in ("ProtocolError", "TooFewValid")
    assert sorted(n.split("(")[0] for n in three["error"]["nodes"]) == ["node1", "node2", "node3"]
    assert pair.python.recover("lied-to", "the password") == secret
