"""Creating what a local cluster needs: keys, node directories, the manifest, the coordinator.

Nodes are made by the real ``pakr node init`` (the same command an operator runs), so a
local cluster exercises the node's own provisioning; everything else (operator and tenant
keys, the signed manifest, the coordinator's config and certificate) is written here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pakr.coordinator.config import create_coordinator_dir
from pakr.coordinator.localcluster.layout import CANARY_TENANT, ClusterLayout
from pakr.coordinator.localcluster.state import ClusterState, LocalNode
from pakr.coordinator.localcluster.supervisor import (
    ClusterStartError,
    child_env,
    free_ports,
    pakr_command,
    port_is_free,
)
from pakr.coordinator.manifest_tools import manifest_nodes, new_cluster_id
from pakr.node.config import RateLimits
from pakr.node.config import load_config as load_node_config
from pakr.node.webconfig import local_dev_web
from pakr.proto.errors import ConfigError
from pakr.proto.hostport import is_loopback, split_host_port
from pakr.proto.manifest import OperatorKey, load_manifest, new_manifest, sign_manifest
from pakr.proto.manifest import write_manifest as write_manifest_file
from pakr.proto.tokens import TenantKey

MANIFEST_TTL_SECONDS = 30 * 24 * 3600
MANIFEST_RENEW_SECONDS = 24 * 3600  # re-sign when the manifest expires sooner than this
NODE_INIT_TIMEOUT = 60


def ensure_keys(layout: ClusterLayout) -> tuple[TenantKey, TenantKey]:
    """The operator key, the tenant key and the canary key, each created if missing; the
    tenant and canary keys (which every node trusts)."""
    if not layout.operator_key_path.exists():
        OperatorKey.generate().save(layout.operator_key_path)
    if not layout.tenant_key_path.exists():
        TenantKey.generate(layout.tenant).save(layout.tenant_key_path)
    if not layout.canary_key_path.exists():
        TenantKey.generate(CANARY_TENANT).save(layout.canary_key_path)
    return TenantKey.load(layout.tenant_key_path), TenantKey.load(layout.canary_key_path)


def allocate_ports(state: ClusterState, indices: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Each new node's (gRPC port, metrics port): ``base_port + i`` and ``base_port + 100 + i``
    when a base port was asked for (refused when taken), else ports free right now."""
    if state.base_port is not None:
        ports = {i: (state.base_port + i, state.base_port + 100 + i) for i in indices}
        for i, pair in ports.items():
            for port in pair:
                if not port_is_free(state.host, port):
                    raise ConfigError(
                        f"port {port} (node {i}) is in use: pick another --base-port,"
                        " or omit it to use free ports"
                    )
        return ports
    found = free_ports(2 * len(indices), state.host)
    return {i: (found[2 * k], found[2 * k + 1]) for k, i in enumerate(indices)}


def allocate_web_ports(
    state: ClusterState, indices: Sequence[int], taken: Sequence[int] = ()
) -> dict[int, int]:
    """Each new node's web listener port: ``base_port + 200 + i`` (refused when taken), else
    a port free right now and not among ``taken`` (the gRPC and metrics ports just chosen)."""
    if state.base_port is not None:
        ports = {i: state.base_port + 200 + i for i in indices}
        for i, port in ports.items():
            if port > 65535 or not port_is_free(state.host, port):
                raise ConfigError(
                    f"port {port} (node {i}'s web listener) is in use or out of range: pick"
                    " another --base-port, or omit it to use free ports"
                )
        return ports
    found = [p for p in free_ports(len(indices) + len(taken), state.host) if p not in taken]
    return dict(zip(indices, found, strict=False))


def add_web_listener(node: LocalNode, port: int) -> None:
    """Turn on the node's browser listener (docs/operator.md): plaintext on the node's
    loopback host, any local dev server's page allowed; the manifest then lists it as the
    node's web_origin. Nodes on other hosts (network namespaces) keep theirs off."""
    host, _ = split_host_port(node.address, "node address")
    if not is_loopback(host):
        return
    config = load_node_config(node.config)
    replace(config, web=local_dev_web(host, port)).save()


def rate_limit_args(limits: RateLimits | None) -> list[str]:
    """``pakr node init`` flags for ``limits`` (none: the node's defaults)."""
    if limits is None:
        return []
    return [
        *("--user-rate", str(limits.user_rate), "--user-burst", str(limits.user_burst)),
        *("--peer-rate", str(limits.peer_rate), "--peer-burst", str(limits.peer_burst)),
    ]


def init_node(
    node_dir: Path,
    index: int,
    host: str,
    ports: tuple[int, int],
    trusted: Sequence[TenantKey],
    extra_args: Sequence[str] = (),
) -> LocalNode:
    """Run ``pakr node init`` for node ``index`` listening on ``host``; the node it made."""
    port, metrics_port = ports
    argv = pakr_command(
        "node", "init", "--dir", str(node_dir), "--index", str(index),
        "--listen", f"{host}:{port}", "--metrics-listen", f"{host}:{metrics_port}",
        *(arg for key in trusted for arg in ("--tenant", f"{key.kid}={key.public_key_text}")),
        *extra_args,
    )  # fmt: skip
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=NODE_INIT_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterStartError(
            f"`pakr node init` for node {index} failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-2000:]}"
        )
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
        return LocalNode(
            index=index,
            node_id=str(info["node_id"]),
            address=str(info["address"]),
            metrics_address=f"{host}:{metrics_port}",
            dir=node_dir,
            config=Path(info["config"]),
            tls_cert=Path(info["tls_cert"]),
        )
    except (ValueError, KeyError, IndexError, TypeError):
        raise ClusterStartError(
            f"`pakr node init` for node {index} printed no JSON line: {done.stdout[-500:]!r}"
        ) from None


def node_from_config(path: Path) -> LocalNode:
    """A node an interrupted earlier creation left behind (its identity and data are kept)."""
    config = load_node_config(path)
    if config.tls_cert is None:
        raise ConfigError(f"{path}: local clusters run with TLS; this node has none")
    return LocalNode(
        index=config.index,
        node_id=config.node_id_hex,
        address=config.listen,
        metrics_address=config.metrics_listen,
        dir=path.parent.resolve(),
        config=path.resolve(),
        tls_cert=config.tls_cert,
    )


def write_manifest(layout: ClusterLayout, state: ClusterState) -> None:
    """Sign a manifest over the nodes unless the current one already lists them and is not
    about to expire (a changed one gets the next serial)."""
    operator = OperatorKey.load(layout.operator_key_path)
    wanted = manifest_nodes([n.config for _, n in sorted(state.node_map.items())])
    serial = 1
    if layout.manifest_path.exists():
        try:
            current = load_manifest(layout.manifest_path, operator_key=operator.public_key_text)
        except ConfigError:
            current = None
        if current is not None:
            if (
                current.nodes == wanted
                and current.threshold == state.threshold
                and current.expires_at - time.time() > MANIFEST_RENEW_SECONDS
            ):
                return
            serial = current.serial + 1
    manifest = new_manifest(
        cluster_id=state.cluster_id or new_cluster_id("local"),
        nodes=wanted,
        threshold=state.threshold,
        register_threshold=state.register_threshold,
        argon2=state.argon2,
        dev=state.dev,
        serial=serial,
        ttl_seconds=MANIFEST_TTL_SECONDS,
    )
    write_manifest_file(sign_manifest(manifest, operator), layout.manifest_path)


def create_coordinator(layout: ClusterLayout, state: ClusterState) -> None:
    """The coordinator's directory (config, TLS) on ``base_port`` (+100 for metrics) or free
    ports; its addresses are recorded in ``state``."""
    if state.base_port is not None:
        port, metrics = state.base_port, state.base_port + 100
    else:
        port, metrics = free_ports(2, state.host)
    state.coordinator_address = f"{state.host}:{port}"
    state.coordinator_metrics = f"{state.host}:{metrics}"
    create_coordinator_dir(
        layout.coordinator_dir,
        listen=state.coordinator_address,
        manifest=layout.manifest_path,
        canary_key=layout.canary_key_path,
        metrics_listen=state.coordinator_metrics,
        root=layout.dir,
    )


def snapshot(directory: Path) -> set[Path] | None:
    """What ``directory`` holds before a first creation (``None``: it does not exist)."""
    return set(directory.iterdir()) if directory.exists() else None


def remove_created(directory: Path, before: set[Path] | None) -> None:
    """Undo a failed first creation: remove what it added (the directory too if it made it)."""
    if before is None:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for path in set(directory.iterdir()) - before:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
