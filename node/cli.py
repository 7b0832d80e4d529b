"""``pakr node init | serve | migrate``: set up and run a share-server.

``init`` writes a complete node directory (config, self-signed TLS certificate, ``keys/``
with the data key and key generations apart from the migrated SQLite database, all 0600 in
0700 directories) and prints one JSON line describing the node, which the cluster
tooling reads to build the manifest. ``serve`` runs until SIGTERM/SIGINT and drains.
``rotate-keys`` runs a key rotation pass by hand (the sweeper runs one every pass).
Also runnable without the coordinator as ``python -m pakr.node``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pakr.node import logs
from pakr.node.auth import load_tenant_keys
from pakr.node.config import (
    LOG_LEVELS,
    DataKeySource,
    HpkeKeyFiles,
    NodeConfig,
    RateLimits,
    load_config,
    resolve_storage_url,
)
from pakr.node.crash import CrashPoints
from pakr.node.hpke_keys import generate_key_files
from pakr.node.keyrotation import KeyPolicy, RotationReport, rotate
from pakr.node.server import NodeServer, serve_forever
from pakr.node.store import open_store
from pakr.node.store.keys import KeyRing
from pakr.node.store.sealing import Sealer
from pakr.node.tls import write_certificate
from pakr.proto.errors import ConfigError, PakrError
from pakr.proto.exitcodes import ExitCode, exit_code_for
from pakr.proto.files import private_directory, write_private_file
from pakr.proto.hostport import is_loopback, split_host_port

CONFIG_NAME = "node.toml"
PRIVATE_UMASK = 0o077  # everything a node writes: files 0600, directories 0700


def _parse_tenants(values: Sequence[str]) -> dict[str, str]:
    tenants: dict[str, str] = {}
    for item in values:
        kid, sep, key = item.partition("=")
        if not sep or not kid or not key:
            raise ConfigError(f"--tenant must be KID=ed25519:<base64url>, got {item!r}")
        tenants[kid] = key
    return tenants


def cmd_init(args: argparse.Namespace) -> int:
    os.umask(PRIVATE_UMASK)
    directory = Path(args.dir).resolve()
    config_path = directory / CONFIG_NAME
    if config_path.exists() and not args.force:
        raise ConfigError(f"{config_path} exists; refusing to overwrite a node (use --force)")
    if not 1 <= args.index <= 255:
        raise ConfigError("--index must be 1..255")
    host, _ = split_host_port(args.listen, "--listen")
    if args.insecure and not is_loopback(host):
        raise ConfigError("--insecure is allowed only with a loopback --listen address")
    node_id = args.node_id.lower() if args.node_id else secrets.token_hex(16)
    try:
        if len(bytes.fromhex(node_id)) != 16:
            raise ValueError
    except ValueError:
        raise ConfigError("--node-id must be 32 hex characters") from None
    tenants = _parse_tenants(args.tenant or [])
    load_tenant_keys(tenants)  # refuse a malformed --tenant before writing anything
    private_directory(directory)
    if args.force:
        for stale in ("node.db", "node.db-wal", "node.db-shm"):
            (directory / stale).unlink(missing_ok=True)
        for generation in (directory / "keys").glob("gen-*"):
            generation.unlink()  # sealed under the data key being replaced
    tls_cert, tls_key = directory / "tls" / "node.crt", directory / "tls" / "node.key"
    write_certificate(tls_cert, tls_key, f"pakr node {node_id}", [host])
    private_directory(directory / "keys")
    data_key = directory / "keys" / "data.key"
    write_private_file(data_key, (secrets.token_bytes(32).hex() + "\n").encode())
    hpke = HpkeKeyFiles(directory / "hpke.key", directory / "hpke.pub")
    generate_key_files(hpke, force=True)
    NodeConfig(
        path=config_path,
        node_id=bytes.fromhex(node_id),
        index=args.index,
        listen=args.listen,
        insecure=args.insecure,
        tls_cert=tls_cert,
        tls_key=tls_key,
        storage_url=resolve_storage_url(args.storage or "sqlite:///node.db", directory),
        data_key=DataKeySource(file=data_key),
        tenants=tenants,
        rate_limits=RateLimits(args.user_rate, args.user_burst, args.peer_rate, args.peer_burst),
        metrics_listen=args.metrics_listen,
        log_level=args.log_level,
        crypto_thread=args.crypto_thread,
        keys_dir=directory / "keys",
        sweep_seconds=args.sweep_seconds,
        hpke=hpke,
    ).save()
    config = load_config(config_path)  # validates what was just written
    if config.storage_url.startswith("sqlite:///"):
        asyncio.run(_migrate(config))
    print(
        json.dumps(
            {
                "node_id": node_id,
                "index": args.index,
                "address": args.listen,
                "tls_cert": str(directory / "tls" / "node.crt"),
                "hpke_public_key": str(directory / "hpke.pub"),
                "config": str(config_path),
            }
        ),
        flush=True,
    )
    return 0


def node_sealer(config: NodeConfig) -> Sealer:
    """The node's sealer: its data key and its key directory."""
    data_key = config.data_key.load()
    return Sealer(data_key, KeyRing(data_key, config.keys_dir))


async def _migrate(config: NodeConfig) -> int:
    store = await open_store(config.storage_url, node_sealer(config), migrate=False)
    try:
        return await store.migrate()
    finally:
        await store.close()


async def rotate_node(config: NodeConfig, now: float) -> RotationReport:
    """One rotation pass over the node's store and key directory, as of ``now``."""
    sealer = node_sealer(config)
    store = await open_store(config.storage_url, sealer)
    try:
        policy = KeyPolicy.for_node(
            config.node_id, config.key_roll_seconds, config.key_retention_seconds
        )
        return await rotate(store, sealer.keys, policy, now, crash=_rotation_crash())
    finally:
        await store.close()


def _rotation_crash() -> Callable[[str], None]:
    points = CrashPoints.from_env()
    return lambda point: points.hit("rotate", point)


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    os.umask(PRIVATE_UMASK)
    config = load_config(args.config)
    logs.configure(config.log_level)
    now = time.time() if args.now is None else args.now
    report = asyncio.run(rotate_node(config, now))
    print(json.dumps(report.to_json()), flush=True)
    return 0 if not report.refused else 1


def cmd_serve(args: argparse.Namespace) -> int:
    os.umask(PRIVATE_UMASK)
    config = load_config(args.config)
    logs.configure(config.log_level)

    def ready(node: NodeServer) -> None:
        info: dict[str, Any] = {
            "listening": node.address,
            "node_id": config.node_id_hex,
            "index": config.index,
            "tls": not config.insecure,
        }
        if node.metrics_port is not None:
            info["metrics_port"] = node.metrics_port
        if node.web is not None:
            info["web_port"] = node.web.port
        print(json.dumps(info), flush=True)

    asyncio.run(serve_forever(config, on_ready=ready))
    return 0


def cmd_hpke_keygen(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    files = config.hpke or HpkeKeyFiles(
        config.path.parent / "hpke.key", config.path.parent / "hpke.pub"
    )
    public = generate_key_files(files, force=args.force)
    if config.hpke is None:
        dataclasses.replace(config, hpke=files).save()
    print(
        json.dumps({"hpke_public_key": public.text, "public_key_file": str(files.public_key_file)}),
        flush=True,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    os.umask(PRIVATE_UMASK)
    config = load_config(args.config)
    logs.configure(config.log_level)
    version = asyncio.run(_migrate(config))
    print(json.dumps({"schema_version": version}), flush=True)
    return 0


def add_settings_arguments(init: argparse.ArgumentParser) -> None:
    """The tunable ``node.toml`` settings ``init`` writes (defaults: :class:`NodeConfig`'s)."""
    limits = RateLimits()
    group = init.add_argument_group("settings written to node.toml")
    group.add_argument(
        "--user-rate", type=float, default=limits.user_rate, metavar="PER_S",
        help="requests per second per (tenant, user); 0 = unlimited (default %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--user-burst", type=int, default=limits.user_burst, metavar="N",
        help="per-user bucket size (default %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--peer-rate", type=float, default=limits.peer_rate, metavar="PER_S",
        help="requests per second per client address; 0 = unlimited (default %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--peer-burst", type=int, default=limits.peer_burst, metavar="N",
        help="per-address bucket size (default %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--sweep-seconds", type=float, default=15.0, metavar="S",
        help="how often due lockouts are erased (default %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="(default %(default)s)"
    )
    group.add_argument(
        "--crypto-thread", action="store_true",
        help="evaluate Recover2 on a second thread (hosts with spare cores)",
    )  # fmt: skip


def add_commands(subparsers: Any) -> None:
    """Add ``node`` and its subcommands to the ``pakr`` argparse tree."""
    node = subparsers.add_parser(
        "node",
        help="run a share-server (node)",
        description="A node holds one share of every user's secret and counts their guesses.",
    )
    sub = node.add_subparsers(dest="node_command", metavar="NODE_COMMAND")

    init = sub.add_parser(
        "init",
        help="create a node directory (config, TLS, data key, DB)",
        description="Write a complete node directory: node.toml, a self-signed TLS"
        " certificate, a data key and a migrated SQLite database (or a PostgreSQL URL)."
        " Prints one JSON line describing the node.",
        epilog="example:\n  pakr node init --dir nodes/node1 --index 1 --listen 127.0.0.1:7001"
        " --tenant acme:1=ed25519:...",
    )
    init.add_argument("--dir", required=True, help="node directory to create")
    init.add_argument("--index", required=True, type=int, help="Shamir index 1..255")
    init.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    init.add_argument(
        "--tenant",
        action="append",
        metavar="KID=PUBKEY",
        help="trusted tenant token key, e.g. acme:1=ed25519:... (repeatable)",
    )
    init.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="where to serve Prometheus metrics (default: none)",
    )
    init.add_argument(
        "--storage", metavar="URL", help="sqlite:///node.db (default) or postgresql://"
    )
    init.add_argument(
        "--insecure", action="store_true", help="plaintext gRPC (loopback only, development)"
    )
    init.add_argument("--node-id", metavar="HEX", help="16-byte node id (default: random)")
    add_settings_arguments(init)
    init.add_argument("--force", action="store_true", help="overwrite an existing node directory")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser(
        "serve",
        help="serve until SIGTERM/SIGINT",
        description="Run the node in the foreground. Prints one JSON line once it listens;"
        " SIGTERM/SIGINT drains the calls in flight, then exits.",
        epilog="example:\n  pakr node serve --config nodes/node1/node.toml",
    )
    serve.add_argument("--config", required=True, help="path to node.toml")
    serve.set_defaults(func=cmd_serve)

    keygen = sub.add_parser(
        "hpke-keygen",
        help="create (or with --force rotate) the node's HPKE key pair",
        description="Write hpke.key (0600) and hpke.pub. After a rotation restart the node and"
        " publish a manifest with a higher serial listing the new public key.",
        epilog="example:\n  pakr node hpke-keygen --config nodes/node1/node.toml",
    )
    keygen.add_argument("--config", required=True, help="path to node.toml")
    keygen.add_argument("--force", action="store_true", help="replace an existing key (rotate)")
    keygen.set_defaults(func=cmd_hpke_keygen)

    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the node's database schema",
        description="Bring the node's database to this version's schema (idempotent). Run it"
        " before `serve` after an upgrade when several replicas share one database.",
        epilog="example:\n  pakr node migrate --config nodes/node1/node.toml",
    )
    migrate.add_argument("--config", required=True, help="path to node.toml")
    migrate.set_defaults(func=cmd_migrate)

    rotate_keys = sub.add_parser(
        "rotate-keys",
        help="roll the key generation if due; re-wrap and destroy generations past retention",
        description="Run one key-rotation pass now (the node's sweeper runs one every pass):"
        " start a new key generation when the current one is due, re-wrap what the old ones"
        " seal, and destroy generations past their retention.",
        epilog="example:\n  pakr node rotate-keys --config nodes/node1/node.toml",
    )
    rotate_keys.add_argument("--config", required=True, help="path to node.toml")
    rotate_keys.add_argument(
        "--now", type=float, help=argparse.SUPPRESS
    )  # a unix time to rotate as of (tests and drills of the schedule)
    rotate_keys.set_defaults(func=cmd_rotate_keys)

    from pakr.node import backup_cli  # backup/restore live with the backup format

    backup_cli.add_commands(sub)

    def no_subcommand(_: argparse.Namespace) -> int:
        node.print_help(sys.stderr)
        return 2

    node.set_defaults(func=no_subcommand)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pakr.node ...``: the node commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="pakr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(sub)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except PakrError as exc:
        print(f"pakr: {exc}", file=sys.stderr)
        return exit_code_for(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
