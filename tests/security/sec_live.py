"""Helpers for security tests against live local clusters (real node processes)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pakr
from pakr.coordinator.localcluster import LocalCluster


def client_for(cluster: LocalCluster, **kwargs: Any) -> pakr.Client:
    """A sync SDK client for ``cluster``; ``token_provider`` defaults to the tenant's key."""
    kwargs.setdefault("token_provider", pakr.dev_token_provider(cluster.tenant_key_path))
    kwargs.setdefault("deadline", 2.0)
    kwargs.setdefault("operator_key", cluster.operator_public_key())
    return pakr.Client.from_manifest(cluster.manifest_path, tenant=cluster.tenant, **kwargs)


def async_client_for(cluster: LocalCluster, **kwargs: Any) -> pakr.AsyncClient:
    kwargs.setdefault("token_provider", pakr.dev_token_provider(cluster.tenant_key_path))
    kwargs.setdefault("deadline", 5.0)
    kwargs.setdefault("operator_key", cluster.operator_public_key())
    return pakr.AsyncClient.from_manifest(cluster.manifest_path, tenant=cluster.tenant, **kwargs)


def _connect(cluster: LocalCluster, index: int) -> sqlite3.Connection:
    path = cluster.node(index).dir / "node.db"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def db_dump(cluster: LocalCluster) -> dict[int, list[str]]:
    """Every node's data tables (the audit log excluded), as SQL text."""
    dumps = {}
    for node in cluster.nodes:
        conn = _connect(cluster, node.index)
        try:
            dumps[node.index] = [
                line for line in conn.iterdump() if not line.startswith('INSERT INTO "audit"')
            ]
        finally:
            conn.close()
    return dumps


def guess_counts(
    cluster: LocalCluster, user: str, slot: str = "committed"
) -> dict[int, int | None]:
    """Each node's durable guess count of the user's version in ``slot`` (None: none)."""
    counts: dict[int, int | None] = {}
    for node in cluster.nodes:
        conn = _connect(cluster, node.index)
        try:
            row = conn.execute(
                "SELECT guess_count FROM versions WHERE tenant = ? AND user_id = ? AND slot = ?",
                (cluster.tenant, user, slot),
            ).fetchone()
        finally:
            conn.close()
        counts[node.index] = None if row is None else int(row[0])
    return counts
