"""Coordinator commands: ``pakr coordinator init|serve|health|fetch-manifest``, ``pakr probe``.

The coordinator is reached through :class:`~pakr.coordinator.cli.admin_client.CoordinatorClient`
(one typed method per RPC). Handlers return an exit code or raise a ``PakrError``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pakr.coordinator.cli.admin_client import CoordinatorClient
from pakr.coordinator.cli.arguments import add_coordinator_address
from pakr.coordinator.cli.exitcodes import ExitCode
from pakr.coordinator.cli.keys import summary, summary_text
from pakr.coordinator.cli.output import emit
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import (
    load_manifest,
    write_manifest,
)


def add_commands(subparsers: Any) -> None:
    """Register the coordinator and probe commands."""
    _add_coordinator(subparsers)
    _add_probe(subparsers)


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
    add_coordinator_address(health)
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
    add_coordinator_address(fetch)
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


def _client(args: argparse.Namespace) -> CoordinatorClient:
    return CoordinatorClient(args.address, args.cert, timeout=args.timeout)


def _coordinator_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.cluster_health()
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
    return 0 if report.can_recover else ExitCode.UNAVAILABLE


def _coordinator_fetch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        raw = client.manifest_bytes()
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
        summary(manifest) | {"path": str(args.out)},
        lambda: f"wrote {args.out}: " + summary_text(manifest),
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
