"""What every ``pakr node`` command that works on an existing node shares, written once.

Each takes ``--config node.toml``, shows an example naming it, and starts the same way:
owner-only umask, the config loaded and validated, logging configured from it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from pakr.node import logs
from pakr.node.config import NodeConfig, load_config

PRIVATE_UMASK = 0o077  # everything a node writes: files 0600, directories 0700
EXAMPLE_CONFIG = "nodes/node1/node.toml"


def config_command(
    subparsers: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str,
    example: str = "",
) -> argparse.ArgumentParser:
    """A ``pakr node NAME --config FILE`` command running ``func``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n  pakr node {name} --config {EXAMPLE_CONFIG}"
        + (f" {example}" if example else ""),
    )
    parser.add_argument("--config", required=True, help="path to node.toml")
    parser.set_defaults(func=func)
    return parser


def open_config(args: argparse.Namespace) -> NodeConfig:
    """How a config command starts: umask 077, ``--config`` loaded, logging configured."""
    os.umask(PRIVATE_UMASK)
    config = load_config(args.config)
    logs.configure(config.log_level)
    return config
