"""The ``pakr`` command line, one module per command group.

:mod:`~pakr.coordinator.cli.app` builds the argparse tree and runs a command;
:mod:`~pakr.coordinator.cli.user` (register, recover, change-password, delete, status,
token), :mod:`~pakr.coordinator.cli.audit`, :mod:`~pakr.coordinator.cli.replication`,
:mod:`~pakr.coordinator.cli.keys` (tenant, manifest, tls),
:mod:`~pakr.coordinator.cli.cluster` (cluster, demo) and
:mod:`~pakr.coordinator.cli.coordinator` (coordinator, probe) contribute commands, as does
:mod:`pakr.node.cli` (node). Exit codes: :mod:`~pakr.coordinator.cli.exitcodes`.
"""

from __future__ import annotations

from pakr.coordinator.cli.app import build_parser, leaf_commands, main
from pakr.coordinator.cli.exitcodes import EXIT_CODES_HELP, ExitCode, exit_code_for

__all__ = ["EXIT_CODES_HELP", "ExitCode", "build_parser", "exit_code_for", "leaf_commands", "main"]
