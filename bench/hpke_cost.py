"""What end-to-end encryption (HPKE, X-Wing) adds to one recovery and one registration.

Per recovery with t nodes the client makes one fresh reply key and opens t sealed Recover3
replies, each node seals one; per registration the client seals n Register2 share bundles
and each node opens one. Bytes are counted on the serialized gRPC messages; CPU is the
median time of exactly those HPKE operations, reported as a ratio to a baseline measured in
the same run: the pure protocol work of the same recovery (every client and node step of
Recover2 and Recover3, HPKE included, without Argon2id), and one Argon2id at the dev floor.
Run: ``python bench/hpke_cost.py [--n 5 --t 3 --rounds 200]``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from steps import measure  # bench/ is the script's own directory: one timing helper

from pakr.proto import kdf, wire
from pakr.proto.choice import VersionChoice
from pakr.proto.counting import count_guess, node_recover2, node_recover3
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.messages import NodeRef, Recover2Reply, Recover3Reply, UserRef
from pakr.proto.records import UserRecord
from pakr.proto.recover import finish_recover2, finish_recover3, start_recover2
from pakr.proto.register import new_version, node_register2, node_register3, prepare_registration
from pakr.proto.sealed import (
    RECOVER3_PLAINTEXT_LEN,
    REGISTER2_PLAINTEXT_LEN,
    open_recover3_reply,
    seal_recover3_reply,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--t", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    n, t, rounds = args.n, args.t, args.rounds

    user = UserRef("bench", "alice")
    nodes = [NodeRef(bytes([i]) * 16, i) for i in range(1, n + 1)]
    node_keys = {node: HpkePrivateKey.from_seed(os.urandom(32)) for node in nodes}
    version = new_version()
    access_key, seed = kdf.stretch_password(b"pw", user.tenant, user.user_id, version, DEV_ARGON2)
    plan = prepare_registration(
        user=user,
        nodes=nodes,
        threshold=t,
        version=version,
        epoch=1,
        expected={},
        access_key=access_key,
        encryption_key_seed=seed,
        secret=os.urandom(32),
        argon2=DEV_ARGON2,
    )
    records: dict[NodeRef, UserRecord] = {}
    for node in nodes:
        pending = node_register2(None, plan.requests[node.node_id], user=user, node=node, now=0)
        assert pending is not None
        committed = node_register3(pending, version)
        assert committed is not None
        records[node] = committed
    use = nodes[:t]
    choice = VersionChoice(version, 1, DEV_ARGON2, tuple(use), ())
    header = wire.header_to_pb(os.urandom(16), user)

    def recovery() -> tuple[int, int]:
        """One recovery's Recover2 and Recover3 work on both sides; returns wire bytes
        (total, HPKE overhead)."""
        attempt = start_recover2(user, choice, access_key, seed)
        replies: dict[NodeRef, Recover2Reply] = {}
        after: dict[NodeRef, Any] = {}
        for node in use:
            record = records[node].committed
            assert record is not None
            counted = count_guess(record, attempt.request, os.urandom(16), 0)
            replies[node] = node_recover2(counted, attempt.request, nonce=counted.attempt.nonce)  # type: ignore[union-attr]
            after[node] = counted
        unlocked = finish_recover2(attempt, replies, threshold=t)
        opened: dict[NodeRef, Recover3Reply] = {}
        total = overhead = 0
        for node, request in unlocked.requests.items():
            _, reply, _ = node_recover3(after[node], request, 0)
            assert reply is not None
            msg = wire.recover3_reply_to_pb(reply, user=user, node_id=node.node_id, request=request)
            opened[node] = wire.recover3_reply_from_pb(
                msg, user=user, node_id=node.node_id, request=request
            )
            req_bytes = len(wire.recover3_to_pb(header, request).SerializeToString())
            total += req_bytes + len(msg.SerializeToString())
            total += len(wire.recover2_to_pb(header, attempt.request).SerializeToString())
            total += len(wire.recover2_reply_to_pb(replies[node]).SerializeToString())
            overhead += len(request.reply_key) + len(msg.sealed_share) - RECOVER3_PLAINTEXT_LEN
        finish_recover3(unlocked, opened, threshold=t)
        return total, overhead

    total_bytes, overhead_bytes = recovery()

    probe = start_recover2(user, choice, access_key, seed)
    reply_plain = Recover3Reply(
        secret_share=plan.requests[nodes[0].node_id].secret_share,
        encrypted_secret=plan.requests[nodes[0].node_id].encrypted_secret,
        secret_commitment=plan.requests[nodes[0].node_id].secret_commitment,
    )
    sealed = seal_recover3_reply(
        reply_plain,
        user=user,
        node_id=nodes[0].node_id,
        version=version,
        attempt_id=probe.attempt_id,
        reply_key=probe.reply_key.public,
    )

    def client_hpke() -> None:
        HpkePrivateKey.from_seed(os.urandom(32))  # the fresh reply key
        for _ in range(t):
            open_recover3_reply(
                sealed,
                user=user,
                node_id=nodes[0].node_id,
                version=version,
                attempt_id=probe.attempt_id,
                reply_key=probe.reply_key,
            )

    def node_hpke() -> None:
        seal_recover3_reply(
            reply_plain,
            user=user,
            node_id=nodes[0].node_id,
            version=version,
            attempt_id=probe.attempt_id,
            reply_key=probe.reply_key.public,
        )

    register_msg = wire.register2_to_pb(
        header,
        plan.requests[nodes[0].node_id],
        node_id=nodes[0].node_id,
        node_key=node_keys[nodes[0]].public,
    )

    def register_seal() -> None:
        for node in nodes:
            wire.register2_to_pb(
                header,
                plan.requests[node.node_id],
                node_id=node.node_id,
                node_key=node_keys[node].public,
            )

    def register_open() -> None:
        wire.register2_from_pb(
            register_msg, user=user, node_id=nodes[0].node_id, node_key=node_keys[nodes[0]]
        )

    base = measure(recovery, rounds)
    argon = measure(
        lambda: kdf.stretch_password(b"pw", user.tenant, user.user_id, version, DEV_ARGON2),
        max(5, rounds // 20),
    )
    client = measure(client_hpke, rounds)
    node_side = measure(node_hpke, rounds)
    hpke_cpu = client + t * node_side
    register_bytes = len(register_msg.SerializeToString())
    register_overhead = len(register_msg.sealed_shares) - REGISTER2_PLAINTEXT_LEN

    print(f"HPKE cost per recovery, n={n} t={t}, median of {rounds}")
    print(f"  baseline: pure Recover2+Recover3 work, both sides   {base * 1e3:8.3f} ms")
    print(f"  baseline: one Argon2id at the dev floor              {argon * 1e3:8.3f} ms")
    print(f"  client: reply key + open {t} replies                 {client * 1e3:8.3f} ms")
    print(f"  node: seal one reply                                 {node_side * 1e3:8.3f} ms")
    print(
        f"  HPKE CPU per recovery (client + {t} nodes)           {hpke_cpu * 1e3:8.3f} ms"
        f" = {hpke_cpu / (base - hpke_cpu):.2f} x the rest of the protocol work,"
        f" {hpke_cpu / argon:.3f} x one dev-floor Argon2id"
    )
    print(
        f"  bytes on the wire, Recover2+3 at {t} nodes            {total_bytes:8d}"
        f" of which HPKE {overhead_bytes} ({overhead_bytes / (total_bytes - overhead_bytes):.2f}"
        " x the unencrypted size)"
    )
    print(
        f"  Register2 per node: {register_bytes} bytes, HPKE adds {register_overhead};"
        f" sealing all {n}: {measure(register_seal, rounds) * 1e3:.3f} ms,"
        f" opening one (node): {measure(register_open, rounds) * 1e3:.3f} ms"
    )


if __name__ == "__main__":
    main()
