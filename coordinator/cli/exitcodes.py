"""The ``pakr`` command's exit codes: those of :mod:`pakr.proto.exitcodes`, which also maps
every ``PakrError`` to its code. Re-exported here so each command module imports its exit
codes from the CLI package itself, never from the CLI's entry point."""

from __future__ import annotations

from pakr.proto.exitcodes import EXIT_CODES_HELP, ExitCode, exit_code_for

__all__ = ["EXIT_CODES_HELP", "ExitCode", "exit_code_for"]
