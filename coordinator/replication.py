"""``pakr replication``: which users heal cannot reach (docs/protocol.md §4b, docs/operator.md).

Every successful login fills missing copies, so users who never log in stay on fewer nodes
than the operator intends (r < n registrations, nodes restored from old backups). This
command asks every node for the tenant's version metadata (``ListVersions``, token scope
``audit``; no share is read) and reports, per node, the users whose newest committed version
that node lacks (none, older, locked) while another node holds it, plus the users held by t
or fewer nodes (one more failure and they cannot be recovered until it is back).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakr.coordinator.pins import add_pin_arguments, resolve_pin
from pakr.proto.errors import PakrError
from pakr.proto.manifest import Manifest, load_manifest
from pakr.proto.messages import UserStatus
from pakr.proto.tokens import TenantKey, issue_token

PAGE = 1000
TIMEOUT_SECONDS = 10.0


@dataclass
class NodeReport:
    """One node's part of the report."""

    reachable: bool = True
    error: str = ""
    users: int = 0  # users this node knows (any version or tombstone)
    behind: list[str] = field(default_factory=list)  # lacks the newest committed version


@dataclass
class Report:
    """Under-replication across the nodes, from version metadata only."""

    users: int
    under_replicated: list[str]  # newest version missing on some reachable node
    at_threshold: list[str]  # newest version held by t or fewer nodes
    nodes: dict[str, NodeReport]

    def as_json(self, *, list_users: bool) -> dict[str, Any]:
        def users(names: list[str]) -> Any:
            return sorted(names) if list_users else len(names)

        return {
            "users": self.users,
            "under_replicated": users(self.under_replicated),
            "held_by_t_or_fewer": users(self.at_threshold),
            "nodes": {
                name: {
                    "reachable": node.reachable,
                    **({"error": node.error} if node.error else {}),
                    "users": node.users,
                    "behind": users(node.behind),
                }
                for name, node in self.nodes.items()
            },
        }


def _newest(statuses: Sequence[UserStatus]) -> tuple[int, bytes] | None:
    """The newest committed ``(epoch, version)`` any node holds, unless a newer tombstone."""
    committed = [(s.committed.epoch, s.committed.version) for s in statuses if s.committed]
    newest = max(committed, default=None)
    tombstone = max((s.tombstone_epoch for s in statuses), default=0)
    if newest is None or tombstone > newest[0]:
        return None
    return newest


def compare(views: Mapping[str, Mapping[str, UserStatus] | None], *, threshold: int) -> Report:
    """The report from each node's ``{user_id: status}`` (``None``: node unreachable)."""
    nodes = {name: NodeReport(reachable=view is not None) for name, view in views.items()}
    reachable = {name: view for name, view in views.items() if view is not None}
    user_ids = sorted({user for view in reachable.values() for user in view})
    under: list[str] = []
    at_threshold: list[str] = []
    for name, view in reachable.items():
        nodes[name].users = len(view)
    for user in user_ids:
        statuses = {name: view.get(user, UserStatus()) for name, view in reachable.items()}
        newest = _newest(list(statuses.values()))
        if newest is None:
            continue
        holders = 0
        for name, status in statuses.items():
            info = status.committed
            if info is not None and (info.epoch, info.version) == newest and not info.locked:
                holders += 1
            else:
                nodes[name].behind.append(user)
        if holders < len(statuses):
            under.append(user)
        if holders <= threshold:
            at_threshold.append(user)
    return Report(
        users=len(user_ids), under_replicated=under, at_threshold=at_threshold, nodes=nodes
    )


async def _list_node(transport: Any, tenant: str, token: str) -> dict[str, UserStatus]:
    out: dict[str, UserStatus] = {}
    after = ""
    while True:
        page = await transport.list_versions(
            tenant, token, after_user_id=after, limit=PAGE, timeout=TIMEOUT_SECONDS
        )
        out.update(page)
        if len(page) < PAGE:
            return out
        after = page[-1][0]


async def collect(manifest: Manifest, key: TenantKey) -> Report:
    """Ask every node of ``manifest`` (in parallel) and compare."""
    from pakr import grpc_transport

    names = {node.ref: node.ref.name for node in manifest.nodes}
    views: dict[str, Mapping[str, UserStatus] | None] = {}
    errors: dict[str, str] = {}

    async def one(node: Any) -> None:
        transport = grpc_transport(node, manifest)
        token = issue_token(key, user_id="operator", audience=node.ref.node_id.hex(), scope="audit")
        try:
            views[names[node.ref]] = await _list_node(transport, key.tenant, token)
        except PakrError as error:
            views[names[node.ref]] = None
            errors[names[node.ref]] = str(error)
        finally:
            await transport.close()

    await asyncio.gather(*(one(node) for node in manifest.nodes))
    ordered = {names[n.ref]: views[names[n.ref]] for n in manifest.nodes}
    report = compare(ordered, threshold=manifest.threshold)
    for name, why in errors.items():
        report.nodes[name].error = why
    return report


def add_command(subparsers: Any) -> None:
    """Register ``pakr replication`` on the top-level parser."""
    command = subparsers.add_parser(
        "replication",
        help="report users whose newest version is missing or older on some node",
        description="Compare every node's version metadata (no shares are read) with an "
        "audit-scope token minted from the tenant key, and print a JSON report: per node the "
        "users whose newest committed version it lacks, and the users held by t or fewer "
        "nodes. A login heals its user; users who never log in stay as reported.",
        epilog="example:\n  pakr replication --manifest cluster/manifest.json --token-key"
        " cluster/tenants/dev.key --operator-key ed25519:...",
    )
    command.add_argument(
        "--manifest", type=Path, required=True, metavar="M", help="the cluster's signed manifest"
    )
    command.add_argument(
        "--token-key",
        type=Path,
        required=True,
        metavar="K",
        help="the tenant key file (mints audit-scope tokens)",
    )
    command.add_argument("--list", action="store_true", help="list user ids, not only counts")
    add_pin_arguments(command)
    command.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    manifest = load_manifest(
        args.manifest, operator_key=resolve_pin(args), min_serial=args.min_serial
    )
    key = TenantKey.load(args.token_key)
    report = asyncio.run(collect(manifest, key))
    print(json.dumps(report.as_json(list_users=args.list), indent=2))
    return 0
