"""A real t-of-n pakr cluster on one machine: each node its own OS process, TLS on, signed manifest.

Used by ``pakr cluster up``, ``pakr demo`` and the integration tests. Everything lives under
one directory, so a cluster can be stopped and started again with its keys, users and guess
counts intact::

    DIR/cluster.json              what this cluster is (shape, ports, node ids) — no secrets
    DIR/operator.key              the manifest-signing key (0600)
    DIR/tenants/<tenant>.key      the tenant's token-signing key (0600)
    DIR/tenants/canary.key        the coordinator's canary tenant key (nodes trust both)
    DIR/manifest.json             the signed manifest clients load
    DIR/nodes/node<i>/            `pakr node init` output: node.toml, tls/, data.key, node.db,
                                  plus node.log (stdout+stderr) and node.pid while running
    DIR/coordinator/              coordinator.toml, tls/, coordinator.log, coordinator.pid

Nodes are started with ``sys.executable -m pakr.coordinator node serve`` in their own session,
so a terminal's Ctrl-C reaches only the supervising process, which then stops them cleanly.
Node numbers in this API are the nodes' Shamir indices, 1..n (``nodes/node<i>``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from signal import SIGINT, SIGKILL, SIGTERM
from types import TracebackType
from typing import Any

from pakr.coordinator.config import create_coordinator_dir
from pakr.coordinator.health import probe
from pakr.coordinator.manifest_tools import manifest_nodes, new_cluster_id
from pakr.coordinator.processes import (
    KILL_WAIT,
    STOP_TIMEOUT,
    Supervised,
    child_env,
    free_ports,
    log_tail,
    pakr_command,
    pid_from_file,
    port_is_free,
    stop_by_pid_files,
    stop_processes,
)
from pakr.node.config import RateLimits
from pakr.node.config import load_config as load_node_config
from pakr.node.webconfig import local_dev_web
from pakr.proto.errors import ConfigError, PakrError
from pakr.proto.hostport import is_loopback, split_host_port
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.manifest import (
    Manifest,
    OperatorKey,
    check_shape,
    load_manifest,
    new_manifest,
    sign_manifest,
    write_manifest,
)
from pakr.proto.tokens import TenantKey

__all__ = [
    "ClusterStartError",
    "LocalCluster",
    "LocalNode",
    "free_ports",
    "pid_from_file",
    "stop_by_pid_files",
]

STATE_FILE = "cluster.json"
CANARY_TENANT = "canary"
STATE_FORMAT = "pakr-local-cluster/1"
MANIFEST_TTL_SECONDS = 30 * 24 * 3600
COORDINATOR_SERVICE = "pakr.v1.Coordinator"


class ClusterStartError(PakrError):
    """A node or the coordinator did not come up; the message quotes its log."""


ProgressCallback = Callable[[str], None]
"""Receives one line per start-up event ("node 3/5 serving")."""

# What `pakr node serve` prints when its port is taken (pakr.node.server).
PORT_IN_USE_MARKER = "the port is in use"


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


class LocalCluster:
    """Create (or reuse) and run a local cluster under ``dir``; a context manager.

    ``with LocalCluster(tmp, nodes=5, threshold=3) as cluster:`` creates every key, node and
    the manifest on first use, starts the nodes and returns once all report SERVING over TLS;
    leaving the block stops them. Re-using a directory keeps its keys, node ids and data; the
    shape arguments must then match what the directory holds.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        nodes: int = 5,
        threshold: int = 3,
        register_threshold: int | None = None,
        base_port: int | None = None,
        dev: bool = True,
        argon2: Argon2Params = DEV_ARGON2,
        tenant: str = "dev",
        with_coordinator: bool = False,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 60.0,
        rate_limits: RateLimits | None = None,
    ) -> None:
        check_shape(
            nodes, threshold, dev=dev, register_threshold=register_threshold, subject="cluster "
        )
        if base_port is not None and not 1024 <= base_port <= 65535 - 200:
            raise ConfigError(f"--base-port must be 1024..{65535 - 200}, not {base_port}")
        self.dir = Path(dir).resolve()
        self.n = nodes
        self.threshold = threshold
        self.register_threshold = register_threshold
        self.base_port = base_port
        self.dev = dev
        self.argon2 = argon2
        self.tenant = tenant
        self.with_coordinator = with_coordinator
        self.host = host
        self.startup_timeout = startup_timeout
        self.rate_limits = rate_limits  # for nodes created from now on (default: the node's)
        self._nodes: dict[int, LocalNode] = {}
        self._procs: dict[int, Supervised] = {}
        self._coordinator: Supervised | None = None
        self._coordinator_address: str | None = None
        self._coordinator_metrics: str | None = None
        self._cluster_id: str | None = None
        self.started_here: list[int] = []  # nodes the last start() started (not found running)
        self.coordinator_started_here = False

    # -- paths -----------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def manifest_path(self) -> Path:
        """The signed manifest clients load (``Client.from_manifest``)."""
        return self.dir / "manifest.json"

    @property
    def operator_key_path(self) -> Path:
        return self.dir / "operator.key"

    @property
    def tenant_key_path(self) -> Path:
        """The tenant's token-signing key (``pakr.dev_token_provider(path)``)."""
        return self.dir / "tenants" / f"{self.tenant}.key"

    @property
    def canary_key_path(self) -> Path:
        """The coordinator's canary tenant key (its own tenant: it can spend no user's guesses)."""
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

    @property
    def coordinator_address(self) -> str | None:
        """``host:port`` of the coordinator when the cluster has one."""
        return self._coordinator_address

    @property
    def coordinator_metrics_address(self) -> str | None:
        return self._coordinator_metrics

    @property
    def node_dirs(self) -> list[Path]:
        """Each node's directory, in index order."""
        return [self._nodes[i].dir for i in sorted(self._nodes)] or [
            self.dir / "nodes" / f"node{i}" for i in range(1, self.n + 1)
        ]

    @property
    def nodes(self) -> list[LocalNode]:
        """The nodes (after :meth:`create`), in index order."""
        return [self._nodes[i] for i in sorted(self._nodes)]

    def node(self, index: int) -> LocalNode:
        """Node ``index`` (1..n)."""
        try:
            return self._nodes[index]
        except KeyError:
            raise ConfigError(f"this cluster has nodes 1..{self.n}, not {index}") from None

    @property
    def operator_public_key_path(self) -> Path:
        """The operator's public key as text (``ed25519:...``), for apps to pin."""
        return self.dir / "operator.pub"

    def operator_public_key(self) -> str:
        """The operator public key clients pin (``operator_key=``)."""
        return OperatorKey.load(self.operator_key_path).public_key_text

    def manifest(self) -> Manifest:
        """The current manifest, verified against this cluster's operator key."""
        return load_manifest(self.manifest_path, operator_key=self.operator_public_key())

    # -- opening an existing directory -------------------------------------------------------

    @classmethod
    def open(cls, dir: str | os.PathLike[str]) -> LocalCluster:
        """The cluster a previous run created in ``dir`` (shape read from ``cluster.json``)."""
        path = Path(dir).resolve() / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except OSError:
            raise ConfigError(
                f"{path.parent} holds no local cluster (no {STATE_FILE}); "
                "create one with `pakr cluster up`"
            ) from None
        except ValueError:
            raise ConfigError(f"{path} is not valid JSON") from None
        cluster = cls(
            path.parent,
            nodes=int(state["nodes"]),
            threshold=int(state["threshold"]),
            register_threshold=state.get("register_threshold"),
            base_port=state.get("base_port"),
            dev=bool(state["dev"]),
            argon2=Argon2Params(**state["argon2"]),
            tenant=str(state["tenant"]),
            with_coordinator=state.get("coordinator") is not None,
            host=str(state.get("host", "127.0.0.1")),
        )
        cluster._load_state(state)
        return cluster

    def _load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ConfigError(f"{self.state_path}: unknown format {state.get('format')!r}")
        self._cluster_id = str(state["cluster_id"])
        self._nodes = {}
        for item in state["node_list"]:
            node = LocalNode(
                index=int(item["index"]),
                node_id=str(item["node_id"]),
                address=str(item["address"]),
                metrics_address=item.get("metrics_address"),
                dir=self.dir / item["dir"],
                config=self.dir / item["config"],
                tls_cert=self.dir / item["tls_cert"],
            )
            self._nodes[node.index] = node
            self._procs[node.index] = self._process_for(node)
        coordinator = state.get("coordinator")
        if coordinator is not None:
            self._coordinator_address = str(coordinator["address"])
            self._coordinator_metrics = coordinator.get("metrics_address")
            self._coordinator = self._coordinator_process()

    def _save_state(self) -> None:
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "cluster_id": self._cluster_id,
            "nodes": self.n,
            "threshold": self.threshold,
            "register_threshold": self.register_threshold,
            "base_port": self.base_port,
            "dev": self.dev,
            "argon2": asdict(self.argon2),
            "tenant": self.tenant,
            "host": self.host,
            # The public half only: what clients pin (`--operator-key`); the private key
            # stays in operator.key.
            "operator_key": OperatorKey.load(self.operator_key_path).public_key_text,
            "node_list": [
                {
                    "index": n.index,
                    "node_id": n.node_id,
                    "address": n.address,
                    "metrics_address": n.metrics_address,
                    "dir": self._relative(n.dir),
                    "config": self._relative(n.config),
                    "tls_cert": self._relative(n.tls_cert),
                }
                for n in self.nodes
            ],
            "coordinator": None
            if self._coordinator_address is None
            else {
                "address": self._coordinator_address,
                "metrics_address": self._coordinator_metrics,
            },
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.state_path)

    def _relative(self, path: Path) -> str:
        """Paths inside the cluster directory are stored relative, so it can be moved whole."""
        try:
            return str(path.resolve().relative_to(self.dir))
        except ValueError:
            return str(path)

    # -- creation ------------------------------------------------------------------------------

    def create(self) -> LocalCluster:
        """Create whatever is missing (keys, nodes, manifest, coordinator config); idempotent.

        A first creation that fails leaves nothing behind: everything it made is removed
        (the directory too when it did not exist), so the next attempt starts clean.
        """
        if self.state_path.exists():
            return self._create()
        existed = self.dir.exists()
        before = set(self.dir.iterdir()) if existed else set()
        try:
            return self._create()
        except BaseException:
            if not existed:
                shutil.rmtree(self.dir, ignore_errors=True)
            else:
                for path in set(self.dir.iterdir()) - before:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
            self._nodes, self._procs, self._cluster_id = {}, {}, None
            self._coordinator = None
            self._coordinator_address = self._coordinator_metrics = None
            raise

    def _create(self) -> LocalCluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.state_path.exists() and not self._nodes:
            self._check_same_shape()
        if not self.operator_key_path.exists():
            OperatorKey.generate().save(self.operator_key_path)
        if not self.tenant_key_path.exists():
            TenantKey.generate(self.tenant).save(self.tenant_key_path)
        if not self.canary_key_path.exists():
            TenantKey.generate(CANARY_TENANT).save(self.canary_key_path)
        tenant_key = TenantKey.load(self.tenant_key_path)
        canary_key = TenantKey.load(self.canary_key_path)
        if self._cluster_id is None:
            self._cluster_id = new_cluster_id("local")
        missing = [i for i in range(1, self.n + 1) if i not in self._nodes]
        ports = self._ports(missing)
        for i in missing:
            existing = self.dir / "nodes" / f"node{i}" / "node.toml"
            if existing.exists():
                # Left by an interrupted earlier create(): keep its identity and data.
                self._nodes[i] = self._node_from_config(existing)
            else:
                listen, metrics, web = ports[i]
                self._nodes[i] = self._init_node(i, listen, metrics, web, (tenant_key, canary_key))
            self._procs[i] = self._process_for(self._nodes[i])
            self._save_state()
        self._write_manifest_if_needed()
        self.operator_public_key_path.write_text(self.operator_public_key() + "\n", "utf-8")
        if self.with_coordinator and self._coordinator_address is None:
            self._create_coordinator()
        self._save_state()
        return self

    def _check_same_shape(self) -> None:
        existing = LocalCluster.open(self.dir)
        if (existing.n, existing.threshold, existing.tenant) != (
            self.n,
            self.threshold,
            self.tenant,
        ):
            raise ConfigError(
                f"{self.dir} already holds a {existing.threshold}-of-{existing.n} cluster for "
                f"tenant {existing.tenant!r}; use the same shape or a fresh directory"
            )
        self._cluster_id = existing._cluster_id
        self._nodes = existing._nodes
        self._procs = existing._procs
        self.register_threshold = existing.register_threshold
        self.dev, self.argon2, self.host = existing.dev, existing.argon2, existing.host
        if existing._coordinator_address is not None:
            self.with_coordinator = True
            self._coordinator_address = existing._coordinator_address
            self._coordinator_metrics = existing._coordinator_metrics
            self._coordinator = existing._coordinator

    def _ports(self, indices: list[int]) -> dict[int, tuple[int, int, int]]:
        """gRPC, metrics and web listener ports per node (base+i, base+100+i, base+200+i)."""
        if self.base_port is not None:
            ports = {
                i: (self.base_port + i, self.base_port + 100 + i, self.base_port + 200 + i)
                for i in indices
            }
            for i, pair in ports.items():
                for port in pair:
                    if port > 65535 or not port_is_free(self.host, port):
                        raise ConfigError(
                            f"port {port} (node {i}) is in use: pick another --base-port,"
                            " or omit it to use free ports"
                        )
            return ports
        found = free_ports(3 * len(indices), self.host)
        return {
            i: (found[3 * k], found[3 * k + 1], found[3 * k + 2]) for k, i in enumerate(indices)
        }

    def _init_node(
        self, index: int, port: int, metrics_port: int, web_port: int, keys: tuple[TenantKey, ...]
    ) -> LocalNode:
        node_dir = self.dir / "nodes" / f"node{index}"
        argv = pakr_command(
            "node",
            "init",
            "--dir",
            str(node_dir),
            "--index",
            str(index),
            "--listen",
            f"{self.host}:{port}",
            "--metrics-listen",
            f"{self.host}:{metrics_port}",
            *(arg for key in keys for arg in ("--tenant", f"{key.kid}={key.public_key_text}")),
            *self._rate_limit_args(),
        )
        done = subprocess.run(
            argv, capture_output=True, text=True, env=child_env(), timeout=60, check=False
        )
        if done.returncode != 0:
            raise ClusterStartError(
                f"`pakr node init` for node {index} failed (exit {done.returncode}): "
                f"{done.stderr.strip()[-2000:]}"
            )
        try:
            info = json.loads(done.stdout.strip().splitlines()[-1])
            if is_loopback(self.host):
                # The browser listener (docs/operator.md): plaintext on loopback, any local
                # dev server's page may call it; the manifest lists it as web_origin.
                config = load_node_config(Path(info["config"]))
                replace(config, web=local_dev_web(self.host, web_port)).save()
            return LocalNode(
                index=index,
                node_id=str(info["node_id"]),
                address=str(info["address"]),
                metrics_address=f"{self.host}:{metrics_port}",
                dir=node_dir,
                config=Path(info["config"]),
                tls_cert=Path(info["tls_cert"]),
            )
        except (ValueError, KeyError, IndexError, TypeError):
            raise ClusterStartError(
                f"`pakr node init` for node {index} printed no JSON line: {done.stdout[-500:]!r}"
            ) from None

    def _rate_limit_args(self) -> list[str]:
        limits = self.rate_limits
        if limits is None:
            return []
        return [
            *("--user-rate", str(limits.user_rate), "--user-burst", str(limits.user_burst)),
            *("--peer-rate", str(limits.peer_rate), "--peer-burst", str(limits.peer_burst)),
        ]

    def _node_from_config(self, path: Path) -> LocalNode:
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

    def _write_manifest_if_needed(self) -> None:
        operator = OperatorKey.load(self.operator_key_path)
        wanted = manifest_nodes([n.config for n in self.nodes])
        serial = 1
        if self.manifest_path.exists():
            try:
                current = load_manifest(self.manifest_path, operator_key=operator.public_key_text)
            except ConfigError:
                current = None
            if current is not None:
                if (
                    current.nodes == wanted
                    and current.threshold == self.threshold
                    and current.expires_at - time.time() > 24 * 3600
                ):
                    return
                serial = current.serial + 1
        manifest = new_manifest(
            cluster_id=self._cluster_id or new_cluster_id("local"),
            nodes=wanted,
            threshold=self.threshold,
            register_threshold=self.register_threshold,
            argon2=self.argon2,
            dev=self.dev,
            serial=serial,
            ttl_seconds=MANIFEST_TTL_SECONDS,
        )
        write_manifest(sign_manifest(manifest, operator), self.manifest_path)

    def _create_coordinator(self) -> None:
        if self.base_port is not None:
            port, metrics = self.base_port, self.base_port + 100
        else:
            port, metrics = free_ports(2, self.host)
        self._coordinator_address = f"{self.host}:{port}"
        self._coordinator_metrics = f"{self.host}:{metrics}"
        create_coordinator_dir(
            self.coordinator_dir,
            listen=self._coordinator_address,
            manifest=self.manifest_path,
            canary_key=self.canary_key_path,
            metrics_listen=self._coordinator_metrics,
            root=self.dir,
        )
        self._coordinator = self._coordinator_process()

    def _process_for(self, node: LocalNode) -> Supervised:
        return Supervised(f"node {node.index}", node.pid_file, str(node.config), node.log)

    def _coordinator_process(self) -> Supervised:
        return Supervised(
            "coordinator",
            self.coordinator_dir / "coordinator.pid",
            str(self.coordinator_config_path),
            self.coordinator_dir / "coordinator.log",
        )

    # -- running ---------------------------------------------------------------------------------

    def start(self, on_progress: ProgressCallback | None = None) -> LocalCluster:
        """Create what is missing, start every stopped node (and coordinator), wait for health.

        Nodes already running are left alone; ``started_here`` lists the ones this call
        started (and only those are stopped again if the start fails). ``on_progress``
        receives a line per node that comes up.
        """
        self.create()
        self.started_here = []
        self.coordinator_started_here = False
        try:
            self._check_ports_free()
            for i in sorted(self._nodes):
                if self._start_node_process(i, None):
                    self.started_here.append(i)
            self.wait_healthy(self.started_here, on_progress=on_progress)
            if self._coordinator is not None:
                self.coordinator_started_here = self._coordinator.pid() is None
                self.start_coordinator()
                if on_progress is not None:
                    on_progress(f"coordinator serving ({self._coordinator_address})")
        except BaseException:
            self.stop(only=self.started_here, coordinator=self.coordinator_started_here)
            raise
        return self

    def _check_ports_free(self) -> None:
        """Refuse, naming the port, when another program holds a stopped node's port."""
        for i, node in sorted(self._nodes.items()):
            if self._procs[i].pid() is not None:
                continue
            host, port = split_host_port(node.address, f"node {i} address")
            if not port_is_free(host, port):
                raise ClusterStartError(
                    f"port {port} of node {i} ({node.address}) is taken by another program:"
                    f" stop it, or create a new cluster in a fresh --dir (optionally with"
                    f" --base-port)"
                )

    def _start_node_process(self, index: int, env: Mapping[str, str] | None) -> bool:
        node = self.node(index)
        proc = self._procs[index]
        if proc.pid() is not None:
            return False
        proc.start(pakr_command("node", "serve", "--config", str(node.config)), node.dir, env)
        return True

    def start_node(
        self, index: int, *, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> int:
        """Start node ``index`` if it is not running (``env`` adds e.g. ``PAKR_CRASH_AT``).

        Returns its pid; with ``wait`` only once it reports SERVING.
        """
        self._start_node_process(index, env)
        if wait:
            self.wait_healthy([index])
        pid = self.node_pid(index)
        if pid is None:
            raise ClusterStartError(
                f"node {index} exited right after starting; its log:\n"
                + log_tail(self.node(index).log)
            )
        return pid

    def node_pid(self, index: int) -> int | None:
        """The pid of node ``index`` while it runs, else ``None``."""
        self.node(index)
        return self._procs[index].pid()

    def kill_node(self, index: int, signal: int = SIGKILL, *, wait: bool = True) -> bool:
        """Send ``signal`` to node ``index`` (default SIGKILL: a crash); False if it was down.

        With ``wait`` (and a terminating signal) returns once the process is gone.
        """
        proc = self._procs[self.node(index).index]
        if not wait or signal not in (SIGKILL, SIGTERM, SIGINT):
            return proc.signal(signal)
        timeout = STOP_TIMEOUT if signal != SIGKILL else KILL_WAIT
        return stop_processes([proc], timeout, signal) == 1

    def wait_exit(self, index: int, timeout: float = 10.0) -> int | None:
        """Wait for node ``index`` to exit by itself (e.g. a crash point); its exit code.

        The code is known only for a process this object started (``-9`` = SIGKILL).
        """
        proc = self._procs[self.node(index).index]
        if not proc.wait(timeout):
            raise TimeoutError(f"node {index} still runs after {timeout:.0f} s")
        return proc.exit_code()

    def running(self) -> dict[int, int | None]:
        """Each node index → its pid, or ``None`` when it is down."""
        return {i: self._procs[i].pid() for i in sorted(self._nodes)}

    def wait_healthy(
        self,
        indices: Iterable[int] | None = None,
        timeout: float | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        """Block until the given nodes (default all) report SERVING over pinned TLS."""
        pending = set(self._nodes if indices is None else indices)
        total, up = len(pending), 0
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        certs = {i: self.node(i).tls_cert.read_bytes() for i in pending}
        last_error: dict[int, str] = {}
        while pending:
            for i in sorted(pending):
                node = self._nodes[i]
                proc = self._procs[i]
                if proc.pid() is None:
                    code = proc.exit_code()
                    tail = log_tail(node.log)
                    if PORT_IN_USE_MARKER in tail:
                        raise ClusterStartError(
                            f"node {i} cannot listen on {node.address}: the port is in use;"
                            " stop the program holding it, or create the cluster in a fresh"
                            " --dir with another --base-port"
                        )
                    raise ClusterStartError(
                        f"node {i} is not running"
                        + (f" (exit {code})" if code is not None else "")
                        + f"; the end of {node.log}:\n{log_tail(node.log)}"
                    )
                result = probe(node.address, certs[i], timeout=1.0)
                if result.serving:
                    pending.discard(i)
                    up += 1
                    if on_progress is not None:
                        on_progress(f"node {up}/{total} serving (node {i}, {node.address})")
                else:
                    last_error[i] = result.error
            if not pending:
                return
            if time.monotonic() >= deadline:
                i = min(pending)
                raise ClusterStartError(
                    f"node {i} did not become healthy within the timeout "
                    f"({last_error.get(i, 'no answer')}); the end of {self._nodes[i].log}:\n"
                    f"{log_tail(self._nodes[i].log)}"
                )
            time.sleep(0.1)

    def start_coordinator(self) -> int:
        """Start the coordinator (if configured and not running) and wait for its health."""
        if self._coordinator is None or self._coordinator_address is None:
            raise ConfigError("this cluster has no coordinator (create it with_coordinator=True)")
        proc = self._coordinator
        if proc.pid() is None:
            argv = pakr_command(
                "coordinator", "serve", "--config", str(self.coordinator_config_path)
            )
            proc.start(argv, self.coordinator_dir, None)
        cert = self.coordinator_cert_path.read_bytes()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            pid = proc.pid()
            if pid is None:
                raise ClusterStartError(
                    f"the coordinator is not running; the end of {proc.log}:\n{log_tail(proc.log)}"
                )
            result = probe(self._coordinator_address, cert, service=COORDINATOR_SERVICE, timeout=1)
            if result.serving:
                return pid
            if time.monotonic() >= deadline:
                raise ClusterStartError(
                    f"the coordinator did not become healthy ({result.error}); "
                    f"the end of {proc.log}:\n{log_tail(proc.log)}"
                )
            time.sleep(0.1)

    def coordinator_pid(self) -> int | None:
        """The coordinator's pid while it runs."""
        return None if self._coordinator is None else self._coordinator.pid()

    def stop_coordinator(self, signal: int = SIGTERM) -> bool:
        """Stop (or, with SIGKILL, crash) the coordinator; False if it was not running."""
        if self._coordinator is None:
            return False
        return stop_processes([self._coordinator], STOP_TIMEOUT, signal) == 1

    def stop(
        self,
        timeout: float = STOP_TIMEOUT,
        *,
        only: Iterable[int] | None = None,
        coordinator: bool = True,
    ) -> None:
        """Stop every process: SIGTERM (graceful drain), then SIGKILL after ``timeout``.

        ``only`` limits it to those node indices, ``coordinator=False`` spares the
        coordinator (``pakr cluster up`` stops just what it started).
        """
        wanted = set(self._procs) if only is None else set(only)
        procs = [proc for i, proc in self._procs.items() if i in wanted]
        if self._coordinator is not None and coordinator:
            procs.append(self._coordinator)
        stop_processes(procs, timeout)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalCluster({str(self.dir)!r}, nodes={self.n}, threshold={self.threshold})"
