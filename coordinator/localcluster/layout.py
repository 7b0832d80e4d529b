"""Where everything of a local cluster lives under its one directory.

::

    DIR/cluster.json              what this cluster is (shape, ports, node ids) — no secrets
    DIR/operator.key              the manifest-signing key (0600); operator.pub its public half
    DIR/tenants/<tenant>.key      the tenant's token-signing key (0600)
    DIR/tenants/canary.key        the coordinator's canary tenant key (nodes trust both)
    DIR/manifest.json             the signed manifest clients load
    DIR/nodes/node<i>/            `pakr node init` output: node.toml, tls/, keys/, node.db,
                                  plus node.log (stdout+stderr) and node.pid while running
    DIR/coordinator/              coordinator.toml, tls/, coordinator.log, coordinator.pid

Paths inside the directory are recorded relative to it, so a cluster can be moved whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "cluster.json"
CANARY_TENANT = "canary"


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """The paths of the cluster in ``dir`` whose application tenant is ``tenant``."""

    dir: Path
    tenant: str

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def operator_key_path(self) -> Path:
        return self.dir / "operator.key"

    @property
    def operator_public_key_path(self) -> Path:
        return self.dir / "operator.pub"

    @property
    def tenant_key_path(self) -> Path:
        return self.dir / "tenants" / f"{self.tenant}.key"

    @property
    def canary_key_path(self) -> Path:
        return self.dir / "tenants" / f"{CANARY_TENANT}.key"

    @property
    def coordinator_dir(self) -> Path:
        return self.dir / "coordinator"

    @property
    def coordinator_config_path(self) -> Path:
        return self.coordinator_dir / "coordinator.toml"

    @property
    def coordinator_cert_path(self) -> Path:
        return self.coordinator_dir / "tls" / "coordinator.crt"

    def node_dir(self, index: int) -> Path:
        return self.dir / "nodes" / f"node{index}"

    def relative(self, path: Path) -> str:
        """``path`` as ``cluster.json`` records it: relative when inside the directory."""
        try:
            return str(path.resolve().relative_to(self.dir))
        except ValueError:
            return str(path)
