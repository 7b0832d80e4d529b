"""Micro-benchmark: the cost of each pure protocol step, client and node side.

Every figure is reported next to a baseline measured in the same run (one ristretto255
variable-base scalar multiplication), so results stay comparable across machines and load:
the ratio says how many scalar mults' worth of work a step is. Run: ``make bench`` or
``python bench/steps.py [--n 5 --t 3 --rounds 200]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pakr.proto import kdf
from pakr.proto.choice import choose_version
from pakr.proto.counting import count_guess, node_recover2, node_recover3
from pakr.proto.errors import InvalidPassword
from pakr.proto.group import Element, Scalar
from pakr.proto.kdf import DEFAULT_ARGON2, DEV_ARGON2
from pakr.proto.messages import NodeRef, Recover2Reply, UserRef
from pakr.proto.records import UserRecord
from pakr.proto.recover import RecoveryAttempt, finish_recover2, finish_recover3, start_recover2
from pakr.proto.register import new_version, node_register2, node_register3, prepare_registration


def measure(fn: Callable[[], Any], rounds: int) -> float:
    """Median seconds per call over ``rounds`` calls (after one warm-up)."""
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _wrong_password(
    attempt: RecoveryAttempt, replies: dict[NodeRef, Recover2Reply], t: int
) -> None:
    """finish_recover2 when the commitment does not match: every reply gets verified."""
    try:
        finish_recover2(attempt, replies, threshold=t)
    except InvalidPassword:
        return
    raise AssertionError("a wrong access key was accepted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--t", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    n, t, rounds = args.n, args.t, args.rounds

    user = UserRef("bench", "alice")
    nodes = [NodeRef(bytes([i]) * 16, i) for i in range(1, n + 1)]
    password = b"correct horse battery staple"
    version = new_version()
    access_key, seed = kdf.stretch_password(
        password, user.tenant, user.user_id, version, DEV_ARGON2
    )

    def register() -> Any:
        return prepare_registration(
            user=user,
            nodes=nodes,
            threshold=t,
            version=version,
            epoch=1,
            expected={},
            access_key=access_key,
            encryption_key_seed=seed,
            secret=bytes(32),
            argon2=DEV_ARGON2,
        )

    plan = register()
    records = {}
    for node in nodes:
        pending = node_register2(None, plan.requests[node.node_id], user=user, node=node, now=0.0)
        records[node] = node_register3(pending, version)
    statuses = {node: rec.status() for node, rec in records.items() if isinstance(rec, UserRecord)}
    choice = choose_version(statuses, {}, threshold=t, node_count=n)
    attempt = start_recover2(user, choice, access_key, seed)
    use = list(choice.nodes)[:t]
    versions = {node: records[node].committed for node in use}  # type: ignore[union-attr]

    def node_step2(node: NodeRef) -> Recover2Reply:
        record = versions[node]
        assert record is not None
        counted = count_guess(record, attempt.request, b"\x01" * 16, 0.0)
        return node_recover2(counted, attempt.request, nonce=b"\x01" * 16)

    replies = {node: node_step2(node) for node in use}
    counted = {
        node: count_guess(versions[node], attempt.request, b"\x01" * 16, 0.0)  # type: ignore[arg-type]
        for node in use
    }
    unlocked = finish_recover2(attempt, replies, threshold=t)
    releases = {}
    for node in use:
        _, reply, _ = node_recover3(counted[node], unlocked.requests[node], 0.0)
        assert reply is not None
        releases[node] = reply
    assert finish_recover3(unlocked, releases, threshold=t) == bytes(32)

    wrong = start_recover2(user, choice, bytes(32), seed)  # another access key, same elements
    wrong = replace(wrong, blind=attempt.blind, blinded_element=attempt.blinded_element)

    pending0 = node_register2(
        None, plan.requests[nodes[0].node_id], user=user, node=nodes[0], now=0.0
    )
    k = Scalar.random()
    point = Element.base_mult(Scalar.random())
    baseline = measure(lambda: point * k, rounds * 5)

    rows: list[tuple[str, str, float]] = [
        (
            "client",
            "Argon2id 19 MiB t=2 (dev floor)",
            measure(lambda: kdf.stretch_password(password, "b", "a", version, DEV_ARGON2), 5),
        ),
        (
            "client",
            "Argon2id 64 MiB t=3 (default)",
            measure(lambda: kdf.stretch_password(password, "b", "a", version, DEFAULT_ARGON2), 3),
        ),
        ("client", f"prepare_registration (n={n}, t={t})", measure(register, rounds // 4)),
        (
            "client",
            "choose_version (Recover1 answers)",
            measure(lambda: choose_version(statuses, {}, threshold=t, node_count=n), rounds),
        ),
        (
            "client",
            "start_recover2 (blind)",
            measure(lambda: start_recover2(user, choice, access_key, seed), rounds),
        ),
        (
            "client",
            f"finish_recover2 ({t} replies: combine, finalize, match)",
            measure(lambda: finish_recover2(attempt, replies, threshold=t), rounds // 4),
        ),
        (
            "client",
            f"finish_recover2, wrong password ({t} replies, all verified)",
            measure(lambda: _wrong_password(wrong, replies, t), rounds // 4),
        ),
        (
            "client",
            f"finish_recover3 ({t} shares: check, combine, decrypt)",
            measure(lambda: finish_recover3(unlocked, releases, threshold=t), rounds),
        ),
        (
            "node",
            "node_register2 (validate, signature, K_i = k_i*G)",
            measure(
                lambda: node_register2(
                    None, plan.requests[nodes[0].node_id], user=user, node=nodes[0], now=0.0
                ),
                rounds,
            ),
        ),
        (
            "node",
            "node_register3 (commit)",
            measure(
                lambda: node_register3(pending0, version),
                rounds,
            ),
        ),
        (
            "node",
            "count_guess + node_recover2 (evaluate + DLEQ proof)",
            measure(lambda: node_step2(use[0]), rounds),
        ),
        (
            "node",
            "node_recover3 (check proof, release share)",
            measure(lambda: node_recover3(counted[use[0]], unlocked.requests[use[0]], 0.0), rounds),
        ),
    ]
    print(f"baseline: one scalar mult = {baseline * 1e6:.1f} us (same run)")
    print("| side | step | median | x scalar mult |")
    print("|---|---|---:|---:|")
    for side, name, seconds in rows:
        shown = f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"
        print(f"| {side} | {name} | {shown} | {seconds / baseline:.1f} |")


if __name__ == "__main__":
    main()
