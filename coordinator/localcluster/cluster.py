"""The :class:`LocalCluster` facade: create (or re-use) and run a cluster under one directory.

The parts live beside it: :mod:`.layout` (paths), :mod:`.state` (``cluster.json`` and the
shape rule), :mod:`.provision` (keys, nodes, manifest, coordinator), :mod:`.supervisor`
(processes and pid files) and :mod:`.readiness` (waiting for SERVING). The hooks
``_ports``, ``_init_node`` and ``_start_node_process`` are what a subclass overrides to run
nodes elsewhere (the soak test puts each in its own network namespace).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from signal import SIGINT, SIGKILL, SIGTERM
from types import TracebackType

from pakr.coordinator.health import NODE_SERVICE
from pakr.coordinator.localcluster import provision
from pakr.coordinator.localcluster.layout import ClusterLayout
from pakr.coordinator.localcluster.readiness import Target, wait_serving
from pakr.coordinator.localcluster.state import (
    ClusterState,
    LocalNode,
    check_same_shape,
    read_state,
    write_state,
)
from pakr.coordinator.localcluster.supervisor import (
    KILL_WAIT,
    STOP_TIMEOUT,
    ClusterStartError,
    Supervised,
    check_ports_free,
    log_tail,
    pakr_command,
    stop_processes,
)
from pakr.coordinator.manifest_tools import new_cluster_id
from pakr.node.config import RateLimits
from pakr.proto.errors import ConfigError
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.manifest import Manifest, OperatorKey, check_shape, load_manifest
from pakr.proto.tokens import TenantKey

COORDINATOR_SERVICE = "pakr.v1.Coordinator"
DEFAULT_NODES = 5
DEFAULT_THRESHOLD = 3

ProgressCallback = Callable[[str], None]
"""Receives one line per start-up event ("node 3/5 serving")."""


class LocalCluster:
    """Create (or reuse) and run a local cluster under ``dir``; a context manager.

    ``with LocalCluster(tmp, nodes=5, threshold=3) as cluster:`` creates every key, node and
    the manifest on first use, starts the nodes and returns once all report SERVING over TLS;
    leaving the block stops them. Re-using a directory keeps its keys, node ids and data; the
    shape arguments must then match what the directory holds. Nodes are started with
    ``sys.executable -m pakr.coordinator node serve`` in their own session, so a terminal's
    Ctrl-C reaches only the supervising process, which then stops them cleanly. Node numbers
    are the nodes' Shamir indices, 1..n (``nodes/node<i>``).
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        nodes: int = DEFAULT_NODES,
        threshold: int = DEFAULT_THRESHOLD,
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
        self.layout = ClusterLayout(Path(dir).resolve(), tenant)
        self.state = ClusterState(
            nodes, threshold, register_threshold, base_port, dev, argon2, tenant, host
        )
        self.with_coordinator = with_coordinator
        self.startup_timeout = startup_timeout
        self.rate_limits = rate_limits  # for nodes created from now on (default: the node's)
        self._procs: dict[int, Supervised] = {}
        self._coordinator: Supervised | None = None
        self.started_here: list[int] = []  # nodes the last start() started (not found running)
        self.coordinator_started_here = False

    # -- shape and paths -------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.layout.dir

    @property
    def n(self) -> int:
        return self.state.nodes

    @property
    def threshold(self) -> int:
        return self.state.threshold

    @property
    def argon2(self) -> Argon2Params:
        return self.state.argon2

    @property
    def tenant(self) -> str:
        return self.state.tenant

    @property
    def host(self) -> str:
        return self.state.host

    @host.setter
    def host(self, value: str) -> None:
        self.state.host = value

    @property
    def manifest_path(self) -> Path:
        """The signed manifest clients load (``Client.from_manifest``)."""
        return self.layout.manifest_path

    @property
    def operator_key_path(self) -> Path:
        return self.layout.operator_key_path

    @property
    def tenant_key_path(self) -> Path:
        """The tenant's token-signing key (``pakr.dev_token_provider(path)``)."""
        return self.layout.tenant_key_path

    @property
    def coordinator_cert_path(self) -> Path:
        return self.layout.coordinator_cert_path

    @property
    def coordinator_address(self) -> str | None:
        """``host:port`` of the coordinator when the cluster has one."""
        return self.state.coordinator_address

    @property
    def coordinator_metrics_address(self) -> str | None:
        return self.state.coordinator_metrics

    @property
    def node_dirs(self) -> list[Path]:
        """Each node's directory, in index order."""
        return [n.dir for n in self.nodes] or [
            self.layout.node_dir(i) for i in range(1, self.n + 1)
        ]

    @property
    def nodes(self) -> list[LocalNode]:
        """The nodes (after :meth:`create`), in index order."""
        return [node for _, node in sorted(self.state.node_map.items())]

    def node(self, index: int) -> LocalNode:
        """Node ``index`` (1..n)."""
        try:
            return self.state.node_map[index]
        except KeyError:
            raise ConfigError(f"this cluster has nodes 1..{self.n}, not {index}") from None

    def operator_public_key(self) -> str:
        """The operator public key clients pin (``operator_key=``)."""
        return OperatorKey.load(self.operator_key_path).public_key_text

    def manifest(self) -> Manifest:
        """The current manifest, verified against this cluster's operator key."""
        return load_manifest(self.manifest_path, operator_key=self.operator_public_key())

    # -- opening and creating ----------------------------------------------------------------

    @classmethod
    def open(cls, dir: str | os.PathLike[str]) -> LocalCluster:
        """The cluster a previous run created in ``dir`` (shape read from ``cluster.json``)."""
        state = read_state(Path(dir).resolve())
        cluster = cls(
            dir,
            nodes=state.nodes,
            threshold=state.threshold,
            register_threshold=state.register_threshold,
            base_port=state.base_port,
            dev=state.dev,
            argon2=state.argon2,
            tenant=state.tenant,
            with_coordinator=state.coordinator_address is not None,
            host=state.host,
        )
        cluster._adopt(state)
        return cluster

    @classmethod
    def open_or_new(
        cls,
        dir: str | os.PathLike[str],
        *,
        nodes: int | None,
        threshold: int | None,
        base_port: int | None = None,
        with_coordinator: bool = False,
        register_threshold: int | None = None,
        tenant: str = "dev",
    ) -> LocalCluster:
        """The cluster in ``dir`` if there is one (``nodes``/``threshold``/``base_port`` may
        be left out, never contradict it), else a new one of that shape (``DEFAULT_NODES``,
        ``DEFAULT_THRESHOLD`` needed; a majority for other sizes)."""
        directory = Path(dir).resolve()
        if (directory / "cluster.json").exists():
            cluster = cls.open(directory)
            check_same_shape(
                cluster.state, Path(dir), nodes=nodes, threshold=threshold, base_port=base_port
            )
            cluster.with_coordinator = cluster.with_coordinator or with_coordinator
            return cluster
        n = nodes or DEFAULT_NODES
        t = threshold or (DEFAULT_THRESHOLD if n == DEFAULT_NODES else n // 2 + 1)
        return cls(
            dir,
            nodes=n,
            threshold=t,
            register_threshold=register_threshold,
            base_port=base_port,
            tenant=tenant,
            with_coordinator=with_coordinator,
        )

    def _adopt(self, state: ClusterState) -> None:
        self.state = state
        self._procs = {i: self._process_for(n) for i, n in state.node_map.items()}
        if state.coordinator_address is not None:
            self.with_coordinator = True
            self._coordinator = self._coordinator_process()

    def _save_state(self) -> None:
        write_state(self.layout, self.state, self.operator_public_key())

    def create(self) -> LocalCluster:
        """Create whatever is missing (keys, nodes, manifest, coordinator config); idempotent.

        A first creation that fails leaves nothing behind: everything it made is removed
        (the directory too when it did not exist), so the next attempt starts clean.
        """
        if self.layout.state_path.exists():
            return self._create()
        before = provision.snapshot(self.dir)
        try:
            return self._create()
        except BaseException:
            provision.remove_created(self.dir, before)
            self.state.cluster_id, self.state.node_map = None, {}
            self.state.coordinator_address = self.state.coordinator_metrics = None
            self._procs, self._coordinator = {}, None
            raise

    def _create(self) -> LocalCluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.layout.state_path.exists() and not self.state.node_map:
            existing = read_state(self.dir)
            check_same_shape(
                existing, self.dir, nodes=self.n, threshold=self.threshold, tenant=self.tenant
            )
            self._adopt(existing)
        keys = provision.ensure_keys(self.layout)
        if self.state.cluster_id is None:
            self.state.cluster_id = new_cluster_id("local")
        missing = [i for i in range(1, self.n + 1) if i not in self.state.node_map]
        ports = self._ports(missing)
        taken = [port for pair in ports.values() for port in pair]
        web_ports = provision.allocate_web_ports(self.state, missing, taken)
        for i in missing:
            existing_config = self.layout.node_dir(i) / "node.toml"
            if existing_config.exists():
                # Left by an interrupted earlier create(): keep its identity and data.
                node = provision.node_from_config(existing_config)
            else:
                node = self._init_node(i, *ports[i], keys)
                provision.add_web_listener(node, web_ports[i])
            self.state.node_map[i] = node
            self._procs[i] = self._process_for(node)
            self._save_state()
        provision.write_manifest(self.layout, self.state)
        self.layout.operator_public_key_path.write_text(self.operator_public_key() + "\n", "utf-8")
        if self.with_coordinator and self.state.coordinator_address is None:
            provision.create_coordinator(self.layout, self.state)
            self._coordinator = self._coordinator_process()
        self._save_state()
        return self

    def _ports(self, indices: list[int]) -> dict[int, tuple[int, int]]:
        return provision.allocate_ports(self.state, indices)

    def _init_node(
        self, index: int, port: int, metrics_port: int, keys: tuple[TenantKey, ...]
    ) -> LocalNode:
        return provision.init_node(
            self.layout.node_dir(index),
            index,
            self.host,
            (port, metrics_port),
            keys,
            provision.rate_limit_args(self.rate_limits),
        )

    def _process_for(self, node: LocalNode) -> Supervised:
        return Supervised(f"node {node.index}", node.pid_file, str(node.config), node.log)

    def _coordinator_process(self) -> Supervised:
        return Supervised(
            "coordinator",
            self.layout.coordinator_dir / "coordinator.pid",
            str(self.layout.coordinator_config_path),
            self.layout.coordinator_dir / "coordinator.log",
        )

    # -- running -------------------------------------------------------------------------------

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
            check_ports_free(
                (f"node {i}", n.address, self._procs[i])
                for i, n in sorted(self.state.node_map.items())
            )
            for i in sorted(self.state.node_map):
                if self._start_node_process(i, None):
                    self.started_here.append(i)
            self.wait_healthy(self.started_here, on_progress=on_progress)
            if self._coordinator is not None:
                self.coordinator_started_here = self._coordinator.pid() is None
                self.start_coordinator()
                if on_progress is not None:
                    on_progress(f"coordinator serving ({self.coordinator_address})")
        except BaseException:
            self.stop(only=self.started_here, coordinator=self.coordinator_started_here)
            raise
        return self

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
        return {i: self._procs[i].pid() for i in sorted(self.state.node_map)}

    def wait_healthy(
        self,
        indices: Iterable[int] | None = None,
        timeout: float | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        """Block until the given nodes (default all) report SERVING over pinned TLS."""
        wanted = sorted(set(self.state.node_map if indices is None else indices))
        targets = [
            Target(
                f"node {i}",
                self._procs[i],
                self.node(i).address,
                self.node(i).tls_cert.read_bytes(),
                NODE_SERVICE,
                self.node(i).log,
            )
            for i in wanted
        ]
        up = 0

        def serving(target: Target) -> None:
            nonlocal up
            up += 1
            if on_progress is not None:
                on_progress(f"node {up}/{len(targets)} serving ({target.name}, {target.address})")

        wait_serving(targets, self.startup_timeout if timeout is None else timeout, serving)

    def start_coordinator(self) -> int:
        """Start the coordinator (if configured and not running) and wait for its health."""
        proc, address = self._coordinator, self.coordinator_address
        if proc is None or address is None:
            raise ConfigError("this cluster has no coordinator (create it with_coordinator=True)")
        if proc.pid() is None:
            argv = pakr_command(
                "coordinator", "serve", "--config", str(self.layout.coordinator_config_path)
            )
            proc.start(argv, self.layout.coordinator_dir, None)
        cert = self.coordinator_cert_path.read_bytes()
        target = Target("the coordinator", proc, address, cert, COORDINATOR_SERVICE, proc.log)
        wait_serving([target], self.startup_timeout)
        pid = proc.pid()
        if pid is None:
            raise ClusterStartError(
                f"the coordinator exited right after starting; its log:\n{log_tail(proc.log)}"
            )
        return pid

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
