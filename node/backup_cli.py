"""``pakr node backup`` and ``pakr node restore``: move a node's users between databases.

Wired into ``pakr node`` by :func:`add_commands` (called with the ``node`` subparsers). Both
print one JSON line summarizing what moved; errors follow the CLI's exit codes
(:mod:`pakr.proto.exitcodes`). See :mod:`pakr.node.backup` for the format.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pakr.node.commands import config_command, open_config


def cmd_backup(args: argparse.Namespace) -> int:
    # Imported here: the backup module loads psycopg, which `pakr node serve` on SQLite
    # should not pay for in memory.
    from pakr.node.backup import backup_node

    config = open_config(args)  # umask 077: the backup file and anything beside it are 0600
    summary = backup_node(config, Path(args.out))
    print(json.dumps({"backup": str(Path(args.out).resolve()), **summary.to_json()}), flush=True)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pakr.node.backup import restore_node

    config = open_config(args)
    summary = restore_node(config, Path(args.in_file))
    print(json.dumps({"restored": str(Path(args.in_file).resolve()), **summary.to_json()}))
    return 0


def add_commands(node_subparsers: Any) -> None:
    """Add ``backup`` and ``restore`` under ``pakr node``."""
    backup = config_command(
        node_subparsers,
        "backup",
        cmd_backup,
        help="write the node's users (shares still sealed) to a JSON-lines file",
        description="Copy every user of this node, shares still sealed under its data key, to"
        " a new file. The data key is not in the backup: keep it apart.",
        example="--out node1.backup",
    )
    backup.add_argument("--out", required=True, metavar="FILE", help="backup file to create")
    restore = config_command(
        node_subparsers,
        "restore",
        cmd_restore,
        help="load a backup of this node into its empty database",
        description="Load a backup made by `pakr node backup` of this same node (same node id"
        " and data key) into its empty database.",
        example="--in node1.backup",
    )
    restore.add_argument(
        "--in", required=True, dest="in_file", metavar="FILE", help="backup file to read"
    )
