"""Operator commands of the ``pakr`` CLI: tenants, manifests, local clusters, coordinator, demo.

``pakr tenant create``      a tenant token-signing key (prints the line nodes must trust)
``pakr manifest keygen``    an operator manifest-signing key
``pakr manifest create``    sign a manifest over the nodes' ``node.toml`` files
``pakr manifest verify``    check a manifest's signature and rules (pin the operator key!)
``pakr cluster up|down|status|kill-node|start-node``   a local multi-process cluster
``pakr coordinator serve``  the control-plane service (manifest, health, metrics)
``pakr demo``               the narrated end-to-end story

Handlers return an exit code or raise a ``PakrError``; ``pakr.coordinator.cli`` maps errors
to exit codes once for every command.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from pakr.coordinator import replication
from pakr.coordinator.localcluster import LocalCluster, stop_by_pid_files
from pakr.coordinator.manifest_tools import manifest_nodes, new_cluster_id, parse_address_overrides
from pakr.coordinator.output import emit
from pakr.coordinator.pins import record_pin
from pakr.proto.errors import ConfigError
from pakr.proto.exitcodes import ExitCode
from pakr.proto.kdf import DEFAULT_ARGON2, DEV_ARGON2, Argon2Params
from pakr.proto.manifest import (
    INSECURE_UNPINNED,
    Manifest,
    OperatorKey,
    load_manifest,
    new_manifest,
    sign_manifest,
    write_manifest,
)
from pakr.proto.tokens import TenantKey, check_tenant_name

DEFAULT_NODES = 5
DEFAULT_THRESHOLD = 3


def add_commands(subparsers: Any) -> None:
    """Register the operator commands on the top-level ``pakr`` parser."""
    _add_tenant(subparsers)
    _add_manifest(subparsers)
    _add_cluster(subparsers)
    _add_coordinator(subparsers)
    _add_probe(subparsers)
    _add_tls(subparsers)
    replication.add_command(subparsers)
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


# -- tenant ---------------------------------------------------------------------------------------


def _add_tenant(subparsers: Any) -> None:
    tenant = subparsers.add_parser(
        "tenant",
        help="tenant token-signing keys",
        description="A tenant (application) signs its users' access tokens with its key.",
    )
    sub = tenant.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)
    create = sub.add_parser(
        "create",
        help="create a tenant's token-signing key file (0600)",
        description="Writes DIR/<NAME>.key (or DIR/<NAME>-<N>.key for a rotated key) and "
        "prints the --tenant argument every node must be given to trust it.",
        epilog="example:\n  pakr tenant create acme --dir keys",
    )
    create.add_argument("name", help="tenant name (1..64 bytes, no ':')")
    create.add_argument(
        "--dir", type=Path, default=Path("."), help="where to write the key (default: .)"
    )
    create.add_argument("--number", type=int, default=1, help="key number, for rotation")
    create.set_defaults(func=_tenant_create)


def _tenant_create(args: argparse.Namespace) -> int:
    name = check_tenant_name(args.name)
    if args.number < 1:
        raise ConfigError("--number must be >= 1")
    key = TenantKey.generate(name, args.number)
    filename = f"{name}.key" if args.number == 1 else f"{name}-{args.number}.key"
    path = key.save(Path(args.dir) / filename)
    emit(
        args,
        {"kid": key.kid, "public_key": key.public_key_text, "key_file": str(path)},
        f"tenant key {key.kid} written to {path} (0600)",
    )
    print(
        f"# give every node: --tenant {key.kid}={key.public_key_text}\n"
        f'# or in node.toml [tenants]: "{key.kid}" = "{key.public_key_text}"',
        file=sys.stderr,
    )
    return 0


# -- manifest -------------------------------------------------------------------------------------


def _add_manifest(subparsers: Any) -> None:
    manifest = subparsers.add_parser(
        "manifest",
        help="create and verify signed cluster manifests",
        description="The manifest names the nodes, their certificates and the thresholds;"
        " clients trust it because the operator key signed it.",
    )
    sub = manifest.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)

    keygen = sub.add_parser(
        "keygen",
        help="create an operator manifest-signing key file (0600)",
        description="Writes a new Ed25519 operator key and prints its public half, which"
        " clients pin with --operator-key.",
        epilog="example:\n  pakr manifest keygen keys/operator.key",
    )
    keygen.add_argument("path", type=Path, help="key file to write (refuses to overwrite)")
    keygen.set_defaults(func=_manifest_keygen)

    create = sub.add_parser(
        "create",
        help="sign a manifest over the nodes' node.toml files",
        description="Reads each node's id, index, listen address and TLS certificate from its "
        "node.toml and writes the signed manifest clients load.",
        epilog="example:\n  pakr manifest create --operator-key keys/operator.key --node-config"
        " nodes/*/node.toml --threshold 3 --out manifest.json",
    )
    create.add_argument("--operator-key", type=Path, required=True, help="operator key file")
    create.add_argument(
        "--node-config",
        type=Path,
        nargs="+",
        action="extend",
        required=True,
        metavar="F",
        help="each node's node.toml (repeatable)",
    )
    create.add_argument("--threshold", type=int, required=True, help="t: nodes needed to recover")
    create.add_argument("--register-threshold", type=int, help="r: acks to register (default n)")
    create.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="INDEX=HOST:PORT",
        help="address clients dial for a node (default: its listen address)",
    )
    create.add_argument(
        "--argon2-memory-kib",
        type=int,
        metavar="KIB",
        help=f"Argon2id memory in KiB (default: {DEFAULT_ARGON2.memory_kib};"
        f" {DEV_ARGON2.memory_kib} with --dev)",
    )
    create.add_argument(
        "--argon2-iterations",
        type=int,
        metavar="N",
        help=f"Argon2id passes (default: {DEFAULT_ARGON2.iterations};"
        f" {DEV_ARGON2.iterations} with --dev)",
    )
    create.add_argument(
        "--argon2-parallelism",
        type=int,
        metavar="N",
        help=f"Argon2id lanes (default: {DEFAULT_ARGON2.parallelism})",
    )
    create.add_argument(
        "--dev",
        action="store_true",
        help="dev manifest: allows t=1 and plaintext nodes, floor Argon2 default",
    )
    create.add_argument(
        "--ttl-days",
        type=float,
        default=365.0,
        metavar="DAYS",
        help="days until the manifest expires (clients then refuse it)",
    )
    create.add_argument("--serial", type=int, default=1, help="must grow with every new manifest")
    create.add_argument("--cluster-id", help="the cluster's id (default: a fresh random id)")
    create.add_argument("--out", type=Path, required=True, help="manifest file to write")
    create.set_defaults(func=_manifest_create)

    verify = sub.add_parser(
        "verify",
        help="check a manifest's signature, shape and expiry",
        description="Verifies the signature (against --operator-key when given), the shape"
        " rules and the expiry; exit 0 when valid, 2 when not.",
        epilog="example:\n  pakr manifest verify manifest.json --operator-key ed25519:...",
    )
    verify.add_argument("manifest", type=Path, help="the manifest file")
    verify.add_argument(
        "--operator-key",
        metavar="TEXT",
        help="pin the operator's public key (ed25519:...); strongly advised",
    )
    verify.add_argument(
        "--min-serial",
        type=int,
        default=0,
        metavar="N",
        help="refuse a manifest older than serial N (a rollback)",
    )
    verify.set_defaults(func=_manifest_verify)


def _manifest_keygen(args: argparse.Namespace) -> int:
    key = OperatorKey.generate()
    path = key.save(args.path)
    emit(
        args,
        {"public_key": key.public_key_text, "key_file": str(path)},
        f"operator key written to {path} (0600); public key (pin it): {key.public_key_text}",
    )
    return 0


def _argon2_from_args(args: argparse.Namespace) -> Argon2Params:
    base = DEV_ARGON2 if args.dev else DEFAULT_ARGON2
    return Argon2Params(
        memory_kib=args.argon2_memory_kib or base.memory_kib,
        iterations=args.argon2_iterations or base.iterations,
        parallelism=args.argon2_parallelism or base.parallelism,
    )


def _manifest_create(args: argparse.Namespace) -> int:
    operator = OperatorKey.load(args.operator_key)
    if args.ttl_days <= 0:
        raise ConfigError("--ttl-days must be positive")
    nodes = manifest_nodes(args.node_config, parse_address_overrides(args.address))
    manifest = new_manifest(
        cluster_id=args.cluster_id or new_cluster_id(),
        nodes=nodes,
        threshold=args.threshold,
        register_threshold=args.register_threshold,
        argon2=_argon2_from_args(args),
        dev=args.dev,
        serial=args.serial,
        ttl_seconds=int(args.ttl_days * 86400),
    )
    write_manifest(sign_manifest(manifest, operator), args.out)
    emit(args, _summary(manifest) | {"path": str(args.out)}, lambda: _summary_text(manifest))
    return 0


def _summary(manifest: Manifest) -> dict[str, Any]:
    return {
        "cluster_id": manifest.cluster_id,
        "serial": manifest.serial,
        "threshold": manifest.threshold,
        "register_threshold": manifest.register_threshold,
        "nodes": len(manifest.nodes),
        "dev": manifest.dev,
        "expires_at": manifest.expires_at,
        "argon2": {
            "memory_kib": manifest.argon2.memory_kib,
            "iterations": manifest.argon2.iterations,
            "parallelism": manifest.argon2.parallelism,
        },
    }


def _summary_text(manifest: Manifest) -> str:
    expires = time.strftime("%Y-%m-%d", time.gmtime(manifest.expires_at))
    a = manifest.argon2
    return (
        f"manifest {manifest.cluster_id} serial {manifest.serial}: {manifest.threshold}-of-"
        f"{len(manifest.nodes)}, register {manifest.register_threshold},"
        f"{' dev,' if manifest.dev else ''} Argon2id {a.memory_kib} KiB x{a.iterations}"
        f" p{a.parallelism}, expires {expires}"
    )


def _manifest_verify(args: argparse.Namespace) -> int:
    manifest = load_manifest(
        args.manifest,
        operator_key=args.operator_key or INSECURE_UNPINNED,
        min_serial=args.min_serial,
    )
    if args.operator_key is None:
        print(
            "warning: no --operator-key given; checked against the key embedded in the "
            "manifest, which proves integrity but not who signed it",
            file=sys.stderr,
        )
    emit(
        args,
        {"valid": True} | _summary(manifest),
        lambda: "valid: " + _summary_text(manifest),
    )
    return 0


# -- cluster --------------------------------------------------------------------------------------


def _add_cluster(subparsers: Any) -> None:
    cluster = subparsers.add_parser(
        "cluster",
        help="run a local multi-process cluster",
        description="A real t-of-n cluster on this machine: every node its own process, TLS,"
        " a signed manifest; everything under one --dir.",
    )
    sub = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    dir_help = "the cluster's directory (keys, nodes, manifest.json, cluster.json)"

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
    up.add_argument("--dir", type=Path, required=True, help=dir_help)
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
    down.add_argument("--dir", type=Path, required=True, help=dir_help)
    down.set_defaults(func=_cluster_down)

    status = sub.add_parser(
        "status",
        help="which nodes run and answer health checks (exit 5 when t do not)",
        description="Probes every node's gRPC health over pinned TLS. Exit 0 when at least t"
        " nodes serve (the cluster can recover secrets), 5 when not.",
        epilog="example:\n  pakr cluster status --dir cluster",
    )
    status.add_argument("--dir", type=Path, required=True, help=dir_help)
    status.set_defaults(func=_cluster_status)

    kill = sub.add_parser(
        "kill-node",
        help="kill one node (SIGKILL: a crash)",
        description="Send a signal to one node: KILL simulates a crash, TERM/INT a graceful"
        " stop. Restart it with `pakr cluster start-node`.",
        epilog="example:\n  pakr cluster kill-node --dir cluster --node 2",
    )
    kill.add_argument("--dir", type=Path, required=True, help=dir_help)
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
    start.add_argument("--dir", type=Path, required=True, help=dir_help)
    start.add_argument("--node", type=int, required=True, metavar="K", help="node index 1..n")
    start.set_defaults(func=_cluster_start_node)


def _open_or_new(args: argparse.Namespace) -> LocalCluster:
    if (args.dir / "cluster.json").exists():
        cluster = LocalCluster.open(args.dir)
        if (args.nodes, args.threshold) != (None, None) and (
            (args.nodes or cluster.n) != cluster.n
            or (args.threshold or cluster.threshold) != cluster.threshold
        ):
            raise ConfigError(
                f"{args.dir} already holds a {cluster.threshold}-of-{cluster.n} cluster; "
                "omit --nodes/--threshold or use a fresh --dir"
            )
        if args.base_port is not None:
            wanted = [f"{cluster.host}:{args.base_port + n.index}" for n in cluster.nodes]
            if [n.address for n in cluster.nodes] != wanted:
                ports = ", ".join(n.address.rpartition(":")[2] for n in cluster.nodes)
                raise ConfigError(
                    f"{args.dir} already holds a cluster on ports {ports}; --base-port"
                    f" {args.base_port} cannot move it: omit --base-port, or use a fresh --dir"
                )
        if args.coordinator and not cluster.with_coordinator:
            cluster.with_coordinator = True
        return cluster
    nodes = args.nodes or DEFAULT_NODES
    threshold = args.threshold or (DEFAULT_THRESHOLD if nodes == DEFAULT_NODES else nodes // 2 + 1)
    return LocalCluster(
        args.dir,
        nodes=nodes,
        threshold=threshold,
        register_threshold=args.register_threshold,
        base_port=args.base_port,
        tenant=args.tenant,
        with_coordinator=args.coordinator,
    )


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
    cluster = _open_or_new(args)
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


# -- coordinator ---------------------------------------------------------------------------------


def _add_coordinator(subparsers: Any) -> None:
    coordinator = subparsers.add_parser(
        "coordinator",
        help="the control-plane service",
        description="Serves the manifest, a per-node health report and Prometheus metrics."
        " Not on the recovery path: clients keep working while it is down.",
    )
    sub = coordinator.add_subparsers(dest="coordinator_command", metavar="ACTION", required=True)
    serve = sub.add_parser(
        "serve",
        help="serve GetManifest, ClusterHealth and Prometheus metrics until SIGTERM",
        description="Run the coordinator in the foreground until SIGTERM/SIGINT.",
        epilog="example:\n  pakr coordinator serve --config coordinator/coordinator.toml",
    )
    serve.add_argument(
        "--config", type=Path, required=True, help="coordinator.toml (`coordinator init`)"
    )
    serve.set_defaults(func=_coordinator_serve)

    health = sub.add_parser(
        "health",
        help="ask a coordinator for its per-node health report (exit 0 when t nodes serve)",
        description="Ask a coordinator which nodes serve. Exit 0 when at least t do, 5 when"
        " not or when the coordinator does not answer.",
        epilog="example:\n  pakr coordinator health --address 127.0.0.1:7000 --cert"
        " coordinator/tls/coordinator.crt",
    )
    health.add_argument(
        "--address", required=True, metavar="HOST:PORT", help="the coordinator's address"
    )
    health.add_argument("--cert", type=Path, help="the coordinator's certificate to pin")
    health.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="time limit in seconds"
    )
    health.set_defaults(func=_coordinator_health)

    fetch = sub.add_parser(
        "fetch-manifest",
        help="download the manifest a coordinator serves, verify it, write it",
        description="The coordinator is a convenient distribution point, not a root of "
        "trust: the manifest is verified against the pinned operator key (and --min-serial) "
        "before it is written.",
        epilog="example:\n  pakr coordinator fetch-manifest --address 127.0.0.1:7000 --cert"
        " coordinator.crt --operator-key ed25519:... --out manifest.json",
    )
    fetch.add_argument(
        "--address", required=True, metavar="HOST:PORT", help="the coordinator's address"
    )
    fetch.add_argument("--cert", type=Path, help="the coordinator's certificate to pin")
    fetch.add_argument(
        "--operator-key",
        required=True,
        metavar="TEXT",
        help="the operator public key (ed25519:...) the manifest must carry",
    )
    fetch.add_argument(
        "--min-serial",
        type=int,
        default=0,
        metavar="N",
        help="refuse a manifest older than serial N (a rollback)",
    )
    fetch.add_argument("--out", type=Path, required=True, help="manifest file to write")
    fetch.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="time limit in seconds"
    )
    fetch.set_defaults(func=_coordinator_fetch)

    init = sub.add_parser(
        "init",
        help="write coordinator.toml and a self-signed TLS certificate into a directory",
        description="Create a coordinator's directory: config and a TLS key and certificate.",
        epilog="example:\n  pakr coordinator init --dir coordinator --listen 127.0.0.1:7000"
        " --manifest manifest.json",
    )
    init.add_argument("--dir", type=Path, required=True, help="directory to write into")
    init.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to serve on")
    init.add_argument("--manifest", type=Path, required=True, help="the manifest it serves")
    init.add_argument("--canary-key", type=Path, help="tenant key for the canary Recover1")
    init.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="where to serve Prometheus metrics (default: none)",
    )
    init.add_argument(
        "--host",
        action="append",
        default=[],
        help="extra DNS name/IP for the certificate (repeatable)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing config")
    init.set_defaults(func=_coordinator_init)


def _add_tls(subparsers: Any) -> None:
    tls = subparsers.add_parser(
        "tls",
        help="self-signed TLS certificates for pinning",
        description="Self-signed certificates: the manifest pins them, no CA is involved.",
    )
    sub = tls.add_subparsers(dest="tls_command", metavar="ACTION", required=True)
    create = sub.add_parser(
        "create",
        help="write a P-256 key (0600) and a self-signed certificate naming the given hosts",
        description="For node certificate rotation or when clients dial a node by a name "
        "`pakr node init` did not put in its certificate (a Kubernetes Service, a load "
        "balancer). 127.0.0.1, ::1 and localhost are always included (health probes). The "
        "manifest pins the certificate: re-sign the manifest after replacing one.",
        epilog="example:\n  pakr tls create --cert tls/node.crt --key tls/node.key --host"
        " node1.pakr.svc",
    )
    create.add_argument("--cert", type=Path, required=True, help="certificate file to write")
    create.add_argument("--key", type=Path, required=True, help="private key file to write")
    create.add_argument("--host", action="append", default=[], help="DNS name or IP (repeatable)")
    create.add_argument("--name", default="pakr", help="certificate common name")
    create.add_argument(
        "--days", type=int, default=825, metavar="DAYS", help="validity in days, 1..3650"
    )
    create.add_argument("--force", action="store_true", help="overwrite existing files")
    create.set_defaults(func=_tls_create)


def _tls_create(args: argparse.Namespace) -> int:
    from pakr.node.tls import write_certificate
    from pakr.proto.manifest import cert_fingerprint

    if not 1 <= args.days <= 3650:
        raise ConfigError("--days must be 1..3650")
    for path in (args.cert, args.key):
        if path.exists() and not args.force:
            raise ConfigError(f"{path} exists; pass --force to replace it")
    write_certificate(args.cert, args.key, common_name=args.name, hosts=args.host, days=args.days)
    pem = args.cert.read_text(encoding="ascii")
    fingerprint = cert_fingerprint(pem).hex()
    emit(
        args,
        {"cert": str(args.cert), "sha256": fingerprint},
        f"certificate {args.cert} written, SHA-256 {fingerprint}",
    )
    return 0


def _add_probe(subparsers: Any) -> None:
    probe = subparsers.add_parser(
        "probe",
        help="grpc.health.v1 check of a node or coordinator over pinned TLS (exit 0 = SERVING)",
        description="For container and Kubernetes exec probes and systemd watchdogs: "
        "Kubernetes' built-in gRPC probe cannot speak TLS.",
        epilog="example:\n  pakr probe --address 127.0.0.1:7001 --cert nodes/node1/tls/node.crt",
    )
    probe.add_argument("--address", required=True, metavar="HOST:PORT", help="what to probe")
    probe.add_argument("--cert", type=Path, help="PEM certificate to pin (omit: plaintext)")
    probe.add_argument(
        "--service",
        default="pakr.v1.Node",
        help="health service name (pakr.v1.Coordinator for the coordinator)",
    )
    probe.add_argument(
        "--timeout", type=float, default=3.0, metavar="SECONDS", help="time limit in seconds"
    )
    probe.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> int:
    from pakr.coordinator.health import probe

    try:
        cert = args.cert.read_bytes() if args.cert is not None else None
    except OSError as exc:
        raise ConfigError(f"cannot read --cert {args.cert}: {exc.strerror}") from None
    result = probe(args.address, cert, service=args.service, timeout=args.timeout)
    emit(
        args,
        {
            "address": args.address,
            "serving": result.serving,
            "latency_ms": round(result.latency_ms, 2),
            "error": result.error,
        },
        f"{args.address}: serving ({result.latency_ms:.1f} ms)"
        if result.serving
        else f"{args.address}: NOT serving ({result.error})",
    )
    return 0 if result.serving else 1


def _coordinator_channel(address: str, cert: Path | None) -> grpc.Channel:
    from pakr.coordinator.health import pinned_channel
    from pakr.proto.channel import CONTROL_MESSAGE_BYTES

    try:
        pem = cert.read_bytes() if cert is not None else None
    except OSError as exc:
        raise ConfigError(f"cannot read --cert {cert}: {exc.strerror}") from None
    return pinned_channel(address, pem, max_message_bytes=CONTROL_MESSAGE_BYTES)


def _coordinator_call(args: argparse.Namespace, rpc: str, request: Any) -> Any:
    from pakr.proto.errors import ClusterUnavailable
    from pakr.proto.v1 import coordinator_pb2_grpc as cpb_grpc

    with _coordinator_channel(args.address, args.cert) as channel:
        stub = cpb_grpc.CoordinatorStub(channel)
        try:
            return getattr(stub, rpc)(request, timeout=args.timeout)
        except grpc.RpcError as error:
            code = error.code().name if hasattr(error, "code") else "UNKNOWN"
            raise ClusterUnavailable(
                {"coordinator": f"{code}"}, f"the coordinator at {args.address} did not answer"
            ) from None


def _coordinator_health(args: argparse.Namespace) -> int:
    from pakr.coordinator.cli import EXIT_UNAVAILABLE
    from pakr.proto.v1 import coordinator_pb2 as cpb

    report = _coordinator_call(args, "ClusterHealth", cpb.ClusterHealthRequest())
    nodes = [
        {
            "index": n.index,
            "node_id": n.node_id,
            "address": n.address,
            "serving": n.serving,
            "latency_ms": round(n.latency_ms, 2),
            **({"error": n.error} if n.error else {}),
        }
        for n in report.nodes
    ]
    data = {
        "threshold": report.threshold,
        "can_recover": report.can_recover,
        "serving": sum(1 for n in report.nodes if n.serving),
        "nodes": nodes,
    }

    def text() -> str:
        verdict = "can recover" if report.can_recover else "CANNOT recover"
        lines = [
            f"{data['serving']} of {len(nodes)} nodes serving, {report.threshold} needed: {verdict}"
        ]
        for n in nodes:
            state = f"serving ({n['latency_ms']} ms)" if n["serving"] else n.get("error", "down")
            lines.append(f"  node {n['index']}  {n['address']:<21} {state}")
        return "\n".join(lines)

    emit(args, data, text, indent=2)
    return 0 if report.can_recover else EXIT_UNAVAILABLE


def _coordinator_fetch(args: argparse.Namespace) -> int:
    from pakr.proto.v1 import coordinator_pb2 as cpb

    response = _coordinator_call(args, "GetManifest", cpb.GetManifestRequest())
    raw: bytes = response.manifest
    try:
        document = json.loads(raw)
    except ValueError:
        raise ConfigError("the coordinator served a manifest that is not JSON") from None
    if not isinstance(document, dict):
        raise ConfigError("the coordinator served a manifest that is not a JSON object")
    manifest = load_manifest(document, operator_key=args.operator_key, min_serial=args.min_serial)
    write_manifest(document, args.out)
    emit(
        args,
        _summary(manifest) | {"path": str(args.out)},
        lambda: f"wrote {args.out}: " + _summary_text(manifest),
    )
    return 0


def _coordinator_init(args: argparse.Namespace) -> int:
    from pakr.coordinator.config import CONFIG_NAME, create_coordinator_dir

    directory: Path = args.dir
    if (directory / CONFIG_NAME).exists() and not args.force:
        raise ConfigError(f"{directory / CONFIG_NAME} exists; pass --force to overwrite it")
    config = create_coordinator_dir(
        directory,
        listen=args.listen,
        manifest=args.manifest,
        hosts=args.host,
        canary_key=args.canary_key,
        metrics_listen=args.metrics_listen,
    )
    emit(
        args,
        {"config": str(config.path), "tls_cert": str(config.tls_cert)},
        f"wrote {config.path} and its TLS certificate",
    )
    return 0


def _coordinator_serve(args: argparse.Namespace) -> int:
    from pakr.coordinator.service import run

    return run(args.config)


def _demo(args: argparse.Namespace) -> int:
    from pakr.coordinator.demo import run_demo

    return run_demo(directory=args.dir, keep=args.keep, base_port=args.base_port)
