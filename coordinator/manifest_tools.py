"""Building a manifest from node configurations (``pakr manifest create``, the local cluster).

The node writes its identity (id, index, listen address, TLS certificate) into ``node.toml``;
the operator gathers those files and signs one manifest over them. Reading the node's own
config parser keeps the two sides from drifting apart.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from pakr.node.config import NodeConfig, load_config
from pakr.node.hpke_keys import read_public_key
from pakr.proto.errors import ConfigError
from pakr.proto.hostport import WILDCARD_HOSTS, split_host_port
from pakr.proto.manifest import ManifestNode


def new_cluster_id(prefix: str = "pakr") -> str:
    """A fresh random cluster id (it only needs to be unique among an operator's clusters)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def manifest_node(config: NodeConfig, address: str | None = None) -> ManifestNode:
    """The manifest entry for one node: its identity, where clients dial, its pinned cert.

    ``address`` overrides the listen address (needed when the node listens on a wildcard or
    sits behind NAT/a load balancer: clients must dial a name its certificate covers). A
    node with a ``[web]`` listener is listed with its ``web_origin`` (``web.origin``, else
    derived from ``web.listen``), which browsers use instead of the gRPC address.
    """
    dial = address or config.listen
    host, _ = split_host_port(dial, f"node {config.index} address", listen=False)
    if host in WILDCARD_HOSTS:
        raise ConfigError(
            f"node {config.index} listens on {config.listen}; give the address clients should "
            f"dial with --address {config.index}=HOST:PORT"
        )
    pem: str | None = None
    if not config.insecure:
        if config.tls_cert is None:
            raise ConfigError(f"{config.path}: tls.cert is missing; clients need it pinned")
        try:
            pem = config.tls_cert.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the TLS certificate {config.tls_cert}: {exc}") from None
    return ManifestNode(
        node_id=config.node_id,
        index=config.index,
        address=dial,
        tls_cert_pem=pem,
        hpke_public_key=read_public_key(config.hpke_files()),
        web_origin=None if config.web is None else config.web.public_origin(),
    )


def parse_address_overrides(values: Sequence[str]) -> dict[int, str]:
    """``["2=node2.example:7001", ...]`` → ``{2: "node2.example:7001"}``."""
    overrides: dict[int, str] = {}
    for value in values:
        index_text, sep, address = value.partition("=")
        if not sep or not index_text.isdigit() or ":" not in address:
            raise ConfigError(f"--address must look like INDEX=HOST:PORT, got {value!r}")
        overrides[int(index_text)] = address
    return overrides


def manifest_nodes(
    config_paths: Sequence[str | os.PathLike[str]],
    addresses: Mapping[int, str] | None = None,
) -> tuple[ManifestNode, ...]:
    """Manifest entries for every ``node.toml`` given, sorted by index."""
    overrides = dict(addresses or {})
    configs = [load_config(Path(p)) for p in config_paths]
    unknown = set(overrides) - {c.index for c in configs}
    if unknown:
        raise ConfigError(f"--address names node index(es) {sorted(unknown)} not given")
    nodes = [manifest_node(c, overrides.get(c.index)) for c in configs]
    return tuple(sorted(nodes, key=lambda n: n.index))
