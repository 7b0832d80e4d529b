"""The ``pakr`` command line: one argparse tree, commands contributed by their packages.

Each command module exposes ``add_commands(subparsers)`` and sets ``func`` on its parsers;
a handler returns an exit code or raises a :class:`~pakr.proto.errors.PakrError`, which is
mapped to an exit code here, once, so every command agrees:

0 ok · 2 usage/config · 3 invalid password · 4 not registered · 5 cluster unavailable ·
6 auth · 7 protocol error · 8 locked out (1 for anything else a node or the OS reports).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from pakr.proto.errors import (
    ClusterUnavailable,
    CommitIncomplete,
    ConfigError,
    InvalidAuth,
    InvalidPassword,
    LockedOut,
    NotRegistered,
    PakrError,
    ProtocolError,
    WeakParameters,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INVALID_PASSWORD = 3
EXIT_NOT_REGISTERED = 4
EXIT_UNAVAILABLE = 5
EXIT_AUTH = 6
EXIT_PROTOCOL = 7
EXIT_LOCKED_OUT = 8

# Modules contributing commands, in --help order. A module that fails to import is a bug,
# not an optional feature: let the ImportError surface.
COMMAND_MODULES = (
    "pakr.coordinator.user_cli",  # register, recover, change-password, delete, status, token
    "pakr.coordinator.admin_cli",  # manifest, tenant, coordinator, cluster, demo
    "pakr.node.cli",  # node init/serve/info/migrate/backup/restore
)


def exit_code_for(error: PakrError) -> int:
    """The documented exit code for ``error``."""
    if isinstance(error, LockedOut):  # before its base class InvalidPassword
        return EXIT_LOCKED_OUT
    if isinstance(error, InvalidPassword):
        return EXIT_INVALID_PASSWORD
    if isinstance(error, NotRegistered):
        return EXIT_NOT_REGISTERED
    if isinstance(error, ClusterUnavailable | CommitIncomplete):
        return EXIT_UNAVAILABLE
    if isinstance(error, InvalidAuth):
        return EXIT_AUTH
    if isinstance(error, ProtocolError | WeakParameters):
        return EXIT_PROTOCOL
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pakr",
        description="pakr: recover a long-term secret from a password, held by t-of-n servers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pakr`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code = func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `pakr cluster status | head`: the reader left; exit quietly like other Unix tools.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except PakrError as error:
        print(f"pakr: {error}", file=sys.stderr)
        return exit_code_for(error)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
