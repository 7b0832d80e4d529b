"""Nodes as separate hosts: each node process in its own network namespace (needs root).

Node i listens on 10.B.i.2 inside namespace ``pakr<tag>n<i>``, reached from the host (the
clients) over a veth pair whose host end is 10.B.i.1. Cutting a link (``cut``) sets the host
end down: packets vanish, as when a cable or a switch fails, which a process signal cannot
imitate (connections hang instead of being refused). ``mend`` brings it back.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pakr.coordinator.localcluster import LocalCluster, LocalNode
from pakr.coordinator.localcluster.supervisor import pakr_command
from pakr.proto.tokens import TenantKey


def available() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, check=False)
    return None if probe.returncode == 0 else "the ip tool cannot list namespaces"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class NetnsCluster(LocalCluster):
    """A :class:`LocalCluster` whose nodes run in their own network namespaces."""

    def __init__(self, dir: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(dir, **kwargs)
        rng = random.SystemRandom()
        self.tag = f"{rng.randrange(16**3):03x}"
        self.net = 100 + rng.randrange(100)
        self.wired = False

    def ns(self, index: int) -> str:
        return f"pakr{self.tag}n{index}"

    def address(self, index: int) -> str:
        return f"10.{self.net}.{index}.2"

    def host_end(self, index: int) -> str:
        return f"pk{self.tag}h{index}"

    def wire(self) -> None:
        """Create one namespace and veth pair per node."""
        for i in range(1, self.n + 1):
            ns, host, inner = self.ns(i), self.host_end(i), f"pk{self.tag}i{i}"
            _ip("netns", "add", ns)
            self.wired = True
            _ip("link", "add", host, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"10.{self.net}.{i}.1/24", "dev", host)
            _ip("link", "set", host, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def unwire(self) -> None:
        if not self.wired:
            return
        for i in range(1, self.n + 1):
            subprocess.run(["ip", "netns", "del", self.ns(i)], capture_output=True, check=False)
            subprocess.run(
                ["ip", "link", "del", self.host_end(i)], capture_output=True, check=False
            )
        self.wired = False

    def cut(self, index: int) -> None:
        _ip("link", "set", self.host_end(index), "down")

    def mend(self, index: int) -> None:
        _ip("link", "set", self.host_end(index), "up")

    # LocalCluster hooks: a node's own address, and its process inside its namespace.

    def _ports(self, indices: list[int]) -> dict[int, tuple[int, int]]:
        return {i: (7443, 9464) for i in indices}  # one host per node: no clashes

    def _init_node(
        self, index: int, port: int, metrics_port: int, keys: tuple[TenantKey, ...]
    ) -> LocalNode:
        host, self.host = self.host, self.address(index)
        try:
            return super()._init_node(index, port, metrics_port, keys)
        finally:
            self.host = host

    def _start_node_process(self, index: int, env: Mapping[str, str] | None) -> bool:
        node = self.node(index)
        proc = self._procs[index]
        if proc.pid() is not None:
            return False
        argv = pakr_command("node", "serve", "--config", str(node.config))
        proc.start(["ip", "netns", "exec", self.ns(index), *argv], Path(node.dir), env)
        return True
