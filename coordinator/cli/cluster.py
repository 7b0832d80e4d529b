"""Local-cluster commands: ``pakr cluster up|down|status|kill-node|start-node``, ``pakr demo``.

Handlers return an exit code or raise a ``PakrError``; :mod:`pakr.coordinator.cli.app` maps
errors to exit codes once for every command.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from pakr.coordinator.cli.arguments import add_cluster_dir
from pakr.coordinator.cli.exitcodes import ExitCode
from pakr.coordinator.cli.output import emit
from pakr.coordinator.cli.pins import record_pin
from pakr.coordinator.localcluster import (
    DEFAULT_NODES,
    DEFAULT_THRESHOLD,
    LocalCluster,
    stop_by_pid_files,
)
from pakr.proto.errors import ConfigError


def add_commands(subparsers: Any) -> None:
    """Register the cluster and demo commands."""
    _add_cluster(subparsers)
    demo = subparsers.add_parser(
        "demo",
        help="run the narrated end-to-end demo on a throwaway local cluster",
        description="Start a 5-node 3-of-5 cluster in a temporary directory, register and "
        "recover a key, spend a guess, survive 2 node failures, fail clearly on a 3rd, "
        "restart and recover, then shut down. Exit 0 only if every step behaved as stated.",
        epilog="examples:\n  pakr demo\n  pakr demo --base-port 7100 --dir /tmp/demo --keep",
    )
    demo.add_argument("--dir", type=Path, help="use this directory (default: a new temporary one)")
    demo.add_argument("--keep", action="store_true", help="keep the directory afterwards")
    demo.add_argument(
        "--base-port",
        type=int,
        metavar="P",
        help="node i listens on port P+i, metrics on P+100+i, web on P+200+i (default: free ports)",
    )
    demo.set_defaults(func=_demo)


# -- cluster --------------------------------------------------------------------------------------


def _add_cluster(subparsers: Any) -> None:
    cluster = subparsers.add_parser(
        "cluster",
        help="run a local multi-process cluster",
        description="A real t-of-n cluster on this machine: every node its own process, TLS,"
        " a signed manifest; everything under one --dir.",
    )
    sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    up = sub.add_parser(
        "up",
        help="create (or reuse) and start a local cluster",
        description="Creates keys, nodes and a signed manifest under --dir (reused when they "
        "exist), starts every node as its own process and waits until all are healthy. Runs "
        "until Ctrl-C/SIGTERM, then stops the nodes it started; --detach leaves them running. "
        "A cluster that is already running is left alone.",
        epilog="examples:\n  pakr cluster up --dir cluster\n"
        "  pakr cluster up --dir cluster --nodes 3 --threshold 2 --base-port 7100 --detach",
    )
    add_cluster_dir(up)
    up.add_argument("--nodes", type=int, help=f"n, the number of nodes (default: {DEFAULT_NODES})")
    up.add_argument(
        "--threshold",
        type=int,
        help=f"t, nodes needed to recover; more than n/2 (default: {DEFAULT_THRESHOLD} for 5"
        " nodes, else n/2+1)",
    )
    up.add_argument(
        "--register-threshold", type=int, help="r, acks needed to register (default: n)"
    )
    up.add_argument(
        "--base-port",
        type=int,
        metavar="P",
        help="node i listens on port P+i, serves metrics on P+100+i and browsers on"
        " http://127.0.0.1:P+200+i (default: free ports; only for a new --dir)",
    )
    up.add_argument("--tenant", default="dev", help="tenant whose key is created")
    up.add_argument("--coordinator", action="store_true", help="also run a coordinator")
    up.add_argument("--detach", action="store_true", help="start, print, exit; nodes keep running")
    up.set_defaults(func=_cluster_up)

    down = sub.add_parser(
        "down",
        help="stop every process of a local cluster",
        description="SIGTERM (graceful drain) to every node and the coordinator, SIGKILL after"
        " 15 s. Keys, users and guess counts stay in --dir for the next `cluster up`.",
        epilog="example:\n  pakr cluster down --dir cluster",
    )
    add_cluster_dir(down)
    down.set_defaults(func=_cluster_down)

    status = sub.add_parser(
        "status",
        help="which nodes run and answer health checks (exit 5 when t do not)",
        description="Probes every node's gRPC health over pinned TLS. Exit 0 when at least t"
        " nodes serve (the cluster can recover secrets), 5 when not.",
        epilog="example:\n  pakr cluster status --dir cluster",
    )
    add_cluster_dir(status)
    status.set_defaults(func=_cluster_status)

    kill = sub.add_parser(
        "kill-node",
        help="kill one node (SIGKILL: a crash)",
        description="Send a signal to one node: KILL simulates a crash, TERM/INT a graceful"
        " stop. Restart it with `pakr cluster start-node`.",
        epilog="example:\n  pakr cluster kill-node --dir cluster --node 2",
    )
    add_cluster_dir(kill)
    kill.add_argument("--node", type=int, required=True, metavar="K", help="node index 1..n")
    kill.add_argument("--signal", default="KILL", help="KILL, TERM or INT")
    kill.set_defaults(func=_cluster_kill_node)

    start = sub.add_parser(
        "start-node",
        help="start one stopped node and wait for its health",
        description="Start one node of the cluster with its own data and wait (up to 60 s)"
        " until it serves.",
        epilog="example:\n  pakr cluster start-node --dir cluster --node 2",
    )
    add_cluster_dir(start)
    start.add_argument("--node", type=int, required=True, metavar="K", help="node index 1..n")
    start.set_defaults(func=_cluster_start_node)


def _cluster_info(cluster: LocalCluster) -> dict[str, Any]:
    manifest = cluster.manifest()
    return {
        "dir": str(cluster.dir),
        "manifest": str(cluster.manifest_path),
        "operator_key": cluster.operator_public_key(),
        "tenant": cluster.tenant,
        "tenant_key": str(cluster.tenant_key_path),
        "threshold": manifest.threshold,
        "nodes": {str(n.index): n.address for n in cluster.nodes},
        "metrics": {str(n.index): n.metrics_address for n in cluster.nodes},
        "web": {str(n.index): n.web_origin for n in manifest.nodes if n.web_origin},
        "coordinator": cluster.coordinator_address,
        "coordinator_metrics": cluster.coordinator_metrics_address,
        "pids": {str(i): pid for i, pid in cluster.running().items()},
    }


def _print_usage_hint(cluster: LocalCluster, info: dict[str, Any], headline: str) -> None:
    metrics = " ".join(f"#{i}:{a.rpartition(':')[2]}" for i, a in info["metrics"].items() if a)
    lines = [
        f"pakr: {headline}",
        f"  manifest:     {cluster.manifest_path}",
        f"  operator key: {info['operator_key']} (pinned here; elsewhere: --operator-key)",
        f"  tenant key:   {cluster.tenant_key_path} (tenant {cluster.tenant!r})",
        "  node ports:   "
        + " ".join(f"#{n.index}:{n.address.rpartition(':')[2]}" for n in cluster.nodes),
        f"  metrics:      http://{cluster.host}:PORT/metrics, ports {metrics}",
        *([f"  web origins:  {' '.join(info['web'].values())}"] if info["web"] else []),
        "  use it from Python:",
        f"    client = pakr.Client.from_manifest({str(cluster.manifest_path)!r},"
        f" tenant={cluster.tenant!r},",
        f"        operator_key={info['operator_key']!r},",
        f"        token_provider=pakr.dev_token_provider({str(cluster.tenant_key_path)!r}))",
        "  or the CLI:",
        f"    export PAKR_MANIFEST={cluster.manifest_path}"
        f" PAKR_TOKEN_KEY={cluster.tenant_key_path}",
        "    pakr register --user alice --generate 32",
    ]
    if cluster.coordinator_address:
        lines.append(
            f"  coordinator:  {cluster.coordinator_address}, metrics"
            f" {cluster.coordinator_metrics_address} (pakr coordinator health --address"
            f" {cluster.coordinator_address} --cert {cluster.coordinator_cert_path})"
        )
    lines += [
        f"  crash a node: pakr cluster kill-node --dir {cluster.dir} --node 1",
        f"  stop it all:  pakr cluster down --dir {cluster.dir}",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _record_pin(cluster: LocalCluster) -> None:
    """The user's CLI trusts this manifest from now on without --operator-key."""
    try:
        record_pin(cluster.manifest_path, cluster.operator_public_key())
    except ConfigError as exc:
        print(f"pakr: warning: {exc}; pass --operator-key to the user commands", file=sys.stderr)


def _cluster_up(args: argparse.Namespace) -> int:
    cluster = LocalCluster.open_or_new(
        args.dir,
        nodes=args.nodes,
        threshold=args.threshold,
        base_port=args.base_port,
        with_coordinator=args.coordinator,
        register_threshold=args.register_threshold,
        tenant=args.tenant,
    )
    running = {i: pid for i, pid in cluster.running().items() if pid is not None}
    if (
        cluster.nodes
        and len(running) == cluster.n
        and (not cluster.with_coordinator or cluster.coordinator_pid() is not None)
    ):
        # Someone else's cluster (a --detach run, another terminal): leave it alone.
        _record_pin(cluster)
        info = _cluster_info(cluster)
        emit(args, info, None)
        pids = ", ".join(str(pid) for _, pid in sorted(running.items()))
        _print_usage_hint(
            cluster,
            info,
            f"the cluster in {cluster.dir} is already running (pids {pids}); leaving it alone",
        )
        return 0
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def progress(line: str) -> None:
        print(f"pakr: {line}", file=sys.stderr, flush=True)

    if not args.detach:
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if running:
            progress(f"nodes {', '.join(map(str, sorted(running)))} already running; left alone")
        cluster.start(on_progress=progress)
        _record_pin(cluster)
        info = _cluster_info(cluster)
        emit(args, info, None)
        manifest = cluster.manifest()
        _print_usage_hint(
            cluster,
            info,
            f"{manifest.threshold}-of-{len(manifest.nodes)} cluster up in {cluster.dir}",
        )
        if args.detach:
            return 0
        ours = cluster.started_here
        which = "every node" if len(ours) == cluster.n else f"nodes {', '.join(map(str, ours))}"
        print(f"pakr: running; Ctrl-C or SIGTERM stops {which}", file=sys.stderr, flush=True)
        known = cluster.running()
        while not stop.wait(0.5):
            # Report nodes that die (or are started again, e.g. by `cluster start-node`).
            now = cluster.running()
            for index, pid in now.items():
                if pid != known.get(index):
                    state = f"running as pid {pid}" if pid else "exited"
                    print(f"pakr: node {index} {state}", file=sys.stderr, flush=True)
            known = now
        print("pakr: stopping the cluster", file=sys.stderr, flush=True)
    finally:
        if not args.detach:
            cluster.stop(only=cluster.started_here, coordinator=cluster.coordinator_started_here)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print("pakr: cluster stopped", file=sys.stderr)
    return 0


def _cluster_down(args: argparse.Namespace) -> int:
    stopped = 0
    if (args.dir / "cluster.json").exists():
        cluster = LocalCluster.open(args.dir)
        stopped = sum(1 for pid in cluster.running().values() if pid is not None)
        stopped += cluster.coordinator_pid() is not None
        cluster.stop()
    # Stragglers (or a directory whose cluster.json is gone): pid files, checked by cmdline.
    stopped += stop_by_pid_files(args.dir)
    emit(args, {"stopped": stopped}, f"stopped {stopped} process(es) of {args.dir}")
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    from pakr.coordinator.health import probe

    cluster = LocalCluster.open(args.dir)
    manifest = cluster.manifest()
    rows: list[dict[str, Any]] = []
    serving = 0
    for node in cluster.nodes:
        pid = cluster.node_pid(node.index)
        row: dict[str, Any] = {
            "index": node.index,
            "node_id": node.node_id,
            "address": node.address,
            "metrics_address": node.metrics_address,
            "pid": pid,
        }
        if pid is not None:
            result = probe(node.address, node.tls_cert.read_bytes(), timeout=2.0)
            row |= {"serving": result.serving, "latency_ms": round(result.latency_ms, 2)}
            if result.error:
                row["error"] = result.error
            serving += result.serving
        else:
            row["serving"] = False
        rows.append(row)
    report = {
        "dir": str(cluster.dir),
        "threshold": manifest.threshold,
        "serving": serving,
        "can_recover": serving >= manifest.threshold,
        "nodes": rows,
        "coordinator": {"address": cluster.coordinator_address, "pid": cluster.coordinator_pid()}
        if cluster.coordinator_address
        else None,
    }
    emit(args, report, lambda: _status_text(report), indent=2)
    return 0 if report["can_recover"] else ExitCode.UNAVAILABLE


def _status_text(report: dict[str, Any]) -> str:
    verdict = "can recover" if report["can_recover"] else "CANNOT recover"
    lines = [
        f"{report['serving']} of {len(report['nodes'])} nodes serving, {report['threshold']}"
        f" needed: {verdict} ({report['dir']})"
    ]
    for row in report["nodes"]:
        if row["serving"]:
            state = f"serving ({row['latency_ms']} ms)"
        elif row["pid"] is None:
            state = "stopped"
        else:
            state = f"running but not serving: {row.get('error', '?')}"
        pid = f"pid {row['pid']}" if row["pid"] else "no process"
        lines.append(f"  node {row['index']}  {row['address']:<21} {pid:<12} {state}")
    coordinator = report["coordinator"]
    if coordinator:
        pid = coordinator["pid"]
        lines.append(
            f"  coordinator {coordinator['address']}  " + (f"pid {pid}" if pid else "stopped")
        )
    return "\n".join(lines)


_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


def _cluster_kill_node(args: argparse.Namespace) -> int:
    name = args.signal.upper().removeprefix("SIG")
    sig = _SIGNALS.get(name)
    if sig is None:
        raise ConfigError(f"--signal must be one of {', '.join(_SIGNALS)}, not {args.signal!r}")
    cluster = LocalCluster.open(args.dir)
    pid = cluster.node_pid(args.node)
    killed = cluster.kill_node(args.node, sig)
    emit(
        args,
        {"node": args.node, "pid": pid, "killed": killed},
        f"node {args.node} (pid {pid}) got SIG{name}" if killed else None,
    )
    if not killed:
        print(f"pakr: node {args.node} was not running", file=sys.stderr)
    return 0


def _cluster_start_node(args: argparse.Namespace) -> int:
    cluster = LocalCluster.open(args.dir)
    started = time.perf_counter()
    pid = cluster.start_node(args.node)
    elapsed = time.perf_counter() - started
    emit(
        args,
        {"node": args.node, "pid": pid, "seconds": round(elapsed, 3)},
        f"node {args.node} serving as pid {pid} ({elapsed:.1f} s)",
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pakr.coordinator.cli.demo import run_demo

    return run_demo(directory=args.dir, keep=args.keep, base_port=args.base_port)
