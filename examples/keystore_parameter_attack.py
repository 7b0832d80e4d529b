"""The parameter attack, refused: nodes advertising weak Argon2id parameters.

A malicious node (or one that an attacker controls) could report that a user's secret was
registered with cheap Argon2id parameters. A client that believed it would hash the password
cheaply, and an attacker holding the nodes' data could then test guesses cheaply too. The pakr
client requires the nodes it uses to agree on the parameters and refuses anything below its
floor (19 MiB, 2 passes) with ``WeakParameters`` *before* spending a guess.

The "malicious node" here is a transport wrapper that rewrites a node's Recover1 answer,
which is exactly what a compromised node could send.

    python examples/keystore_parameter_attack.py --manifest D/manifest.json \\
        --token-key D/tenants/dev.key \
        --operator-key "$(cat D/operator.pub)"
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import pakr
from pakr.proto.kdf import Argon2Params
from pakr.proto.manifest import Manifest, ManifestNode
from pakr.proto.messages import UserRef, UserStatus

DEMO_PASSWORD = "demo only: keystore passphrase"  # a real app prompts for it
WEAK = Argon2Params(memory_kib=64, iterations=1, parallelism=1)


class WeakeningNode:
    """Wraps a node's transport and lowers the Argon2 memory it reports (the attack)."""

    def __init__(self, inner: pakr.NodeTransport) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def recover1(self, user: UserRef, token: str, *, timeout: float) -> UserStatus:
        status = await self._inner.recover1(user, token, timeout=timeout)
        if status.committed is not None:
            status = replace(status, committed=replace(status.committed, argon2=WEAK))
        return status


def attacked_factory(malicious: set[int]) -> Any:
    def factory(node: ManifestNode, manifest: Manifest) -> pakr.NodeTransport:
        transport = pakr.grpc_transport(node, manifest)
        return WeakeningNode(transport) if node.index in malicious else transport

    return factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--token-key", required=True)
    parser.add_argument(
        "--operator-key", required=True, help="the operator public key to pin (D/operator.pub)"
    )
    parser.add_argument("--user", default="alice-keystore")
    args = parser.parse_args(argv)
    provider = pakr.dev_token_provider(args.token_key)

    def client(malicious: set[int]) -> pakr.Client:
        return pakr.Client.from_manifest(
            args.manifest,
            operator_key=args.operator_key,
            tenant=provider.tenant,
            token_provider=provider,
            transport_factory=attacked_factory(malicious),
        )

    secret = b"keystore master key".ljust(32, b"\0")
    with client(set()) as honest:
        honest.register(args.user, DEMO_PASSWORD, secret)
        before = honest.status(args.user).guesses_remaining
        nodes = len(honest.manifest.nodes)
        threshold = honest.manifest.threshold

    # One malicious node: outvoted by the others and never asked to evaluate a guess.
    with client({1}) as attacked:
        if attacked.recover(args.user, DEMO_PASSWORD) != secret:
            print("FAIL: wrong secret", file=sys.stderr)
            return 1
    print("one node advertising weak parameters: outvoted, recovery used the honest nodes")

    # A majority advertising weak parameters: refused before any guess is spent.
    majority = set(range(1, nodes + 1))
    with client(majority) as attacked:
        try:
            attacked.recover(args.user, DEMO_PASSWORD)
        except pakr.WeakParameters as exc:
            print(f"{nodes} of {nodes} nodes advertising weak parameters: refused ({exc})")
        else:
            print("FAIL: the client accepted weak parameters", file=sys.stderr)
            return 1
    with client(set()) as honest:
        after = honest.status(args.user).guesses_remaining
    if after != before:
        print(f"FAIL: guesses changed {before} → {after}", file=sys.stderr)
        return 1
    print(f"no guess was spent (t={threshold}): {after} guesses left, as before")
    return 0


if __name__ == "__main__":
    sys.exit(main())
