"""``pakr node backup`` and ``pakr node restore``: move a node's users between databases.

Wired into ``pakr node`` by :func:`add_commands` (called with the ``node`` subparsers). Both
print one JSON line summarizing what moved; errors follow the CLI's exit codes
(``ConfigError`` → 2, other ``PakrError`` → 1). See :mod:`pakr.node.backup` for the format.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from pakr.node import logs
from pakr.node.config import load_config


def cmd_backup(args: argparse.Namespace) -> int:
    os.umask(0o077)  # the backup file and anything beside it: 0600
    # Imported here: the backup module loads psycopg, which `pakr node serve` on SQLite
    # should not pay for in memory.
    from pakr.node.backup import backup_node

    config = load_config(args.config)
    logs.configure(config.log_level)
    summary = backup_node(config, Path(args.out))
    print(json.dumps({"backup": str(Path(args.out).resolve()), **summary.to_json()}), flush=True)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    os.umask(0o077)  # the backup file and anything beside it: 0600
    from pakr.node.backup import restore_node

    config = load_config(args.config)
    logs.configure(config.log_level)
    summary = restore_node(config, Path(args.in_file))
    print(json.dumps({"restored": str(Path(args.in_file).resolve()), **summary.to_json()}))
    return 0


def add_commands(node_subparsers: Any) -> None:
    """Add ``backup`` and ``restore`` under ``pakr node``."""
    backup = node_subparsers.add_parser(
        "backup", help="write the node's users (shares still sealed) to a JSON-lines file"
    )
    backup.add_argument("--config", required=True, help="path to node.toml")
    backup.add_argument("--out", required=True, metavar="FILE", help="backup file to create")
    backup.set_defaults(func=cmd_backup)

    restore = node_subparsers.add_parser(
        "restore", help="load a backup of this node into its empty database"
    )
    restore.add_argument("--config", required=True, help="path to node.toml")
    restore.add_argument(
        "--in", required=True, dest="in_file", metavar="FILE", help="backup file to read"
    )
    restore.set_defaults(func=cmd_restore)
