"""What a local cluster is, as ``cluster.json`` records it (no secret is ever in it).

The shape (n, t, r, tenant, dev flag, Argon2 parameters, host), the cluster id, each node's
identity and addresses, and the coordinator's addresses. :func:`check_same_shape` is the one
rule for re-using a directory: a request may leave the shape out, never contradict it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pakr.coordinator.localcluster.layout import STATE_FILE, ClusterLayout
from pakr.proto.errors import ConfigError
from pakr.proto.hostport import join_host_port, split_host_port
from pakr.proto.kdf import Argon2Params

STATE_FORMAT = "pakr-local-cluster/1"


@dataclass(frozen=True, slots=True)
class LocalNode:
    """One node of a local cluster, as ``pakr node init`` created it."""

    index: int
    node_id: str
    address: str
    metrics_address: str | None
    dir: Path
    config: Path
    tls_cert: Path

    @property
    def log(self) -> Path:
        """Where the node process's stdout and stderr go."""
        return self.dir / "node.log"

    @property
    def pid_file(self) -> Path:
        """Holds the node's pid while it runs."""
        return self.dir / "node.pid"


@dataclass(slots=True)
class ClusterState:
    """A cluster's shape and, once created, its identities and addresses."""

    nodes: int
    threshold: int
    register_threshold: int | None
    base_port: int | None
    dev: bool
    argon2: Argon2Params
    tenant: str
    host: str
    cluster_id: str | None = None
    node_map: dict[int, LocalNode] = field(default_factory=dict)
    coordinator_address: str | None = None
    coordinator_metrics: str | None = None


def read_state(directory: Path) -> ClusterState:
    """The state a previous run wrote to ``directory/cluster.json``."""
    path = directory / STATE_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ConfigError(
            f"{directory} holds no local cluster (no {STATE_FILE}); "
            "create one with `pakr cluster up`"
        ) from None
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON") from None
    if doc.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: unknown format {doc.get('format')!r}")
    state = ClusterState(
        nodes=int(doc["nodes"]),
        threshold=int(doc["threshold"]),
        register_threshold=doc.get("register_threshold"),
        base_port=doc.get("base_port"),
        dev=bool(doc["dev"]),
        argon2=Argon2Params(**doc["argon2"]),
        tenant=str(doc["tenant"]),
        host=str(doc.get("host", "127.0.0.1")),
        cluster_id=str(doc["cluster_id"]),
    )
    for item in doc["node_list"]:
        node = LocalNode(
            index=int(item["index"]),
            node_id=str(item["node_id"]),
            address=str(item["address"]),
            metrics_address=item.get("metrics_address"),
            dir=directory / item["dir"],
            config=directory / item["config"],
            tls_cert=directory / item["tls_cert"],
        )
        state.node_map[node.index] = node
    coordinator = doc.get("coordinator")
    if coordinator is not None:
        state.coordinator_address = str(coordinator["address"])
        state.coordinator_metrics = coordinator.get("metrics_address")
    return state


def write_state(layout: ClusterLayout, state: ClusterState, operator_public_key: str) -> None:
    """Record ``state`` in ``cluster.json`` atomically (with the operator's *public* key, what
    clients pin; the private key stays in operator.key)."""
    doc: dict[str, Any] = {
        "format": STATE_FORMAT,
        "cluster_id": state.cluster_id,
        "nodes": state.nodes,
        "threshold": state.threshold,
        "register_threshold": state.register_threshold,
        "base_port": state.base_port,
        "dev": state.dev,
        "argon2": asdict(state.argon2),
        "tenant": state.tenant,
        "host": state.host,
        "operator_key": operator_public_key,
        "node_list": [
            {
                "index": n.index,
                "node_id": n.node_id,
                "address": n.address,
                "metrics_address": n.metrics_address,
                "dir": layout.relative(n.dir),
                "config": layout.relative(n.config),
                "tls_cert": layout.relative(n.tls_cert),
            }
            for _, n in sorted(state.node_map.items())
        ],
        "coordinator": None
        if state.coordinator_address is None
        else {"address": state.coordinator_address, "metrics_address": state.coordinator_metrics},
    }
    tmp = layout.state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, layout.state_path)


def check_same_shape(
    existing: ClusterState,
    directory: Path,
    *,
    nodes: int | None,
    threshold: int | None,
    tenant: str | None = None,
    base_port: int | None = None,
) -> None:
    """Refuse to re-use ``directory`` for a different cluster (``None``: whatever it holds)."""
    if (
        (nodes or existing.nodes) != existing.nodes
        or (threshold or existing.threshold) != existing.threshold
        or (tenant or existing.tenant) != existing.tenant
    ):
        raise ConfigError(
            f"{directory} already holds a {existing.threshold}-of-{existing.nodes} cluster for "
            f"tenant {existing.tenant!r}; use the same shape (or leave it out) or a fresh"
            " directory"
        )
    if base_port is not None:
        current = sorted(existing.node_map.items())
        wanted = [join_host_port(existing.host, base_port + i) for i, _ in current]
        if [n.address for _, n in current] != wanted:
            ports = ", ".join(str(split_host_port(n.address, "address")[1]) for _, n in current)
            raise ConfigError(
                f"{directory} already holds a cluster on ports {ports}; --base-port"
                f" {base_port} cannot move it: omit --base-port, or use a fresh --dir"
            )
