"""A real t-of-n pakr cluster on one machine: each node its own OS process, TLS on, signed
manifest. Used by ``pakr cluster up``, ``pakr demo`` and the integration tests.

Everything lives under one directory (see :mod:`.layout`), so a cluster can be stopped and
started again with its keys, users and guess counts intact. :class:`LocalCluster` is the
entry point; the package's modules hold its parts.
"""

from __future__ import annotations

from pakr.coordinator.localcluster.cluster import (
    COORDINATOR_SERVICE,
    DEFAULT_NODES,
    DEFAULT_THRESHOLD,
    LocalCluster,
)
from pakr.coordinator.localcluster.state import LocalNode
from pakr.coordinator.localcluster.supervisor import (
    ClusterStartError,
    free_ports,
    pid_from_file,
    stop_by_pid_files,
)

__all__ = [
    "COORDINATOR_SERVICE",
    "DEFAULT_NODES",
    "DEFAULT_THRESHOLD",
    "ClusterStartError",
    "LocalCluster",
    "LocalNode",
    "free_ports",
    "pid_from_file",
    "stop_by_pid_files",
]
