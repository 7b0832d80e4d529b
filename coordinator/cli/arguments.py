"""Argument blocks several commands share, written once.

``user_command`` is the parser every user command starts from (manifest, user, operator pin,
tenant, token source, deadline, password source); ``add_cluster_dir`` the ``--dir`` of the
local-cluster commands; ``add_coordinator_address`` how the operator reaches a coordinator.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pakr.coordinator.cli.pins import add_pin_arguments

TOKENS_EPILOG = (
    "Tokens: --token-key FILE mints them from a tenant key (development only). --token-cmd CMD"
    " runs CMD once per node token (split like a shell line, no shell); {user}, {audience} and"
    " {scope} in it become the user id, the node id (hex) and the token scope, also given as"
    " PAKR_USER_ID, PAKR_AUDIENCE, PAKR_SCOPE and PAKR_TENANT in its environment; it must"
    " print the token and exit 0 within 10 s. --manifest, --token-key, --token-cmd and"
    " --tenant default to PAKR_MANIFEST,"
    " PAKR_TOKEN_KEY, PAKR_TOKEN_CMD and PAKR_TENANT, then to the profile named by --profile"
    " or PAKR_PROFILE (a table in ~/.config/pakr/profiles.toml, or $PAKR_CONFIG)."
)
EXAMPLE_FLAGS = "--manifest cluster/manifest.json --token-key cluster/tenants/dev.key"


def user_command(
    subparsers: Any,
    name: str,
    help_text: str,
    description: str,
    example: str,
    *,
    password: bool = True,
    user_required: bool = True,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help_text,
        description=description,
        epilog=f"{TOKENS_EPILOG}\n\nexample:\n  pakr {name} {EXAMPLE_FLAGS} {example}",
    )
    parser.add_argument(
        "--manifest",
        type=Path,
        metavar="M",
        help="the cluster's signed manifest file (default: $PAKR_MANIFEST or the profile's)",
    )
    if user_required:
        parser.add_argument("--user", required=True, metavar="U", help="user id (1..128 bytes)")
    add_pin_arguments(parser)
    parser.add_argument(
        "--tenant",
        help="tenant name (default: $PAKR_TENANT, else the --token-key's tenant)",
    )
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument(
        "--token-key",
        type=Path,
        metavar="FILE",
        help="tenant key file that mints tokens locally, development only"
        " (default: $PAKR_TOKEN_KEY or the profile's)",
    )
    tokens.add_argument(
        "--token-cmd",
        metavar="CMD",
        help="command printing a token; {user} and {audience} are substituted, and "
        "PAKR_USER_ID, PAKR_AUDIENCE, PAKR_TENANT are set in its environment"
        " (default: $PAKR_TOKEN_CMD or the profile's)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="time limit of each protocol step, in seconds (default: 5)",
    )
    if password:
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password (one per line) from stdin instead of prompting",
        )
    parser.set_defaults(required_settings=("manifest", "token"))
    return parser


def add_cluster_dir(parser: argparse.ArgumentParser) -> None:
    """``--dir``: the local cluster a ``pakr cluster`` command works on."""
    parser.add_argument(
        "--dir",
        type=Path,
        required=True,
        help="the cluster's directory (keys, nodes, manifest.json, cluster.json)",
    )


def add_coordinator_address(parser: argparse.ArgumentParser) -> None:
    """``--address``, ``--cert`` and ``--timeout``: how the operator reaches a coordinator."""
    parser.add_argument(
        "--address", required=True, metavar="HOST:PORT", help="the coordinator's address"
    )
    parser.add_argument("--cert", type=Path, help="the coordinator's certificate to pin")
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="time limit in seconds"
    )
