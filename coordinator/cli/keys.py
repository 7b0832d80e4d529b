"""Key material commands: ``pakr tenant create``, ``pakr manifest keygen|create|verify``,
``pakr tls create``.

Handlers return an exit code or raise a ``PakrError``; :mod:`pakr.coordinator.cli.app` maps
errors to exit codes once for every command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from pakr.coordinator.cli.output import emit
from pakr.coordinator.manifest_tools import manifest_nodes, new_cluster_id, parse_address_overrides
from pakr.proto.errors import ConfigError
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


def add_commands(subparsers: Any) -> None:
    """Register the tenant, manifest and tls commands."""
    _add_tenant(subparsers)
    _add_manifest(subparsers)
    _add_tls(subparsers)


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
    emit(args, summary(manifest) | {"path": str(args.out)}, lambda: summary_text(manifest))
    return 0


def summary(manifest: Manifest) -> dict[str, Any]:
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


def summary_text(manifest: Manifest) -> str:
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
        {"valid": True} | summary(manifest),
        lambda: "valid: " + summary_text(manifest),
    )
    return 0


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
