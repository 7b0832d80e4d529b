"""The ``pakr`` command line: one argparse tree, commands contributed by their packages.

Each command module exposes ``add_commands(subparsers)`` and sets ``func`` on its parsers;
a handler returns an exit code or raises a :class:`~pakr.proto.errors.PakrError`, which is
mapped to an exit code here, once, by :func:`pakr.proto.exitcodes.exit_code_for`, so every
command agrees (the list is in every ``--help``).

Conventions every command shares, applied here rather than in each module: ``--json`` and
``--verbose`` on every command, ``(default: ...)`` in each flag's help, the exit-code list
and an example in each command's help, "did you mean" for a mistyped command, ``--version``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
from collections.abc import Iterator, Sequence
from importlib import import_module
from typing import Any, NoReturn

from pakr.coordinator.cli.exitcodes import EXIT_CODES_HELP, ExitCode, exit_code_for
from pakr.proto.errors import ClusterUnavailable, PakrError

# Modules contributing commands, in --help order. A module that fails to import is a bug,
# not an optional feature: let the ImportError surface.
COMMAND_MODULES = (
    "pakr.coordinator.cli.user",  # register, recover, change-password, delete, status, token
    "pakr.coordinator.cli.audit",  # audit
    "pakr.coordinator.cli.keys",  # tenant, manifest, tls
    "pakr.coordinator.cli.cluster",  # cluster, demo
    "pakr.coordinator.cli.coordinator",  # coordinator, probe
    "pakr.coordinator.cli.replication",  # replication
    "pakr.node.cli",  # node init/serve/hpke-keygen/migrate/rotate-keys/backup/restore
)


def version() -> str:
    """The installed pakr distribution's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("pakr")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs but keeps indented lines (examples) as written; adds defaults."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        out: list[str] = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if (
                lines
                and all(line.startswith("  ") for line in lines[1:])
                and (lines[0].startswith("  ") or lines[0].endswith(":"))
            ):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(
                    textwrap.fill(
                        " ".join(lines), width, initial_indent=indent, subsequent_indent=indent
                    )
                )
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        default = action.default
        if (
            text
            and action.option_strings
            and "default" not in text
            and default not in (None, False, [], argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with pakr's help layout and "did you mean" for a mistyped command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and "invalid choice" in message:
                word = message.split("invalid choice: ", 1)[1].split("'")[1]
                close = difflib.get_close_matches(word, list(action.choices), n=3, cutoff=0.6)
                if close:
                    message = f"unknown command {word!r}; did you mean {' or '.join(close)}?"
                else:
                    message = f"unknown command {word!r}; see `{self.prog} --help`"
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.values()


def leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command of the tree as (its words, its parser)."""
    children = list(_subparsers(parser))
    if not children:
        yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from leaf_commands(child, (*path, name))


def _decorate(parser: argparse.ArgumentParser) -> None:
    """Give every command the shared flags and the exit-code list."""
    for _, leaf in leaf_commands(parser):
        flags = {option for action in leaf._actions for option in action.option_strings}
        if "--json" not in flags:
            leaf.add_argument(
                "--json",
                action="store_true",
                help="print the result as JSON (the default when stdout is not a terminal)",
            )
        if "--verbose" not in flags:
            leaf.add_argument(
                "-v",
                "--verbose",
                action="store_true",
                help="on failure, also print each node's full error (gRPC's own words)",
            )
        leaf.epilog = ((leaf.epilog or "") + "\n\n" + EXIT_CODES_HELP).strip()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pakr",
        description="pakr: recover a long-term secret from a password, held by t-of-n servers.",
        epilog="Everyday flags can come from the environment (PAKR_MANIFEST, PAKR_TOKEN_KEY, "
        "PAKR_TOKEN_CMD, PAKR_TENANT) or a profile (--profile NAME, see `pakr register "
        "--help`). Shell completion: `source <(pakr completion bash)`.\n\n" + EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"pakr {version()}")
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="read everyday flags from profile NAME (also PAKR_PROFILE)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).add_commands(sub)
    from pakr.coordinator.cli.completion import add_command as add_completion

    add_completion(sub, parser)
    _decorate(parser)
    return parser


def print_error(error: PakrError, args: argparse.Namespace | None) -> None:
    """The error as a person reads it: one line, then per-node reasons and the next step."""
    verbose = bool(getattr(args, "verbose", False))
    if not isinstance(error, ClusterUnavailable) or not error.reasons:
        print(f"pakr: {error}", file=sys.stderr)
        return
    print(f"pakr: {error.summary}", file=sys.stderr)
    for node, why in sorted(error.reasons.items()):
        print(f"  {node}: {why}", file=sys.stderr)
        if verbose and error.details.get(node, why) != why:
            print(f"      {error.details[node]}", file=sys.stderr)
    print(f"pakr: next: {_next_step(args)}", file=sys.stderr)


def _next_step(args: argparse.Namespace | None) -> str:
    manifest = getattr(args, "manifest", None)
    directory = getattr(args, "dir", None)
    if directory is None and manifest is not None:
        candidate = os.path.dirname(os.path.abspath(manifest))
        if os.path.exists(os.path.join(candidate, "cluster.json")):
            directory = candidate
    where = (
        f"`pakr cluster status --dir {directory}`"
        if directory is not None
        else "the node addresses in the manifest"
    )
    tail = "" if getattr(args, "verbose", False) else "; --verbose shows each node's full error"
    return f"check that the nodes run and are reachable ({where}){tail}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pakr`` console script."""
    args: argparse.Namespace | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return ExitCode.USAGE
        from pakr.coordinator.cli.settings import apply_settings

        apply_settings(args)
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("\npakr: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `pakr cluster status | head`: the reader left; exit quietly like other Unix tools.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except PakrError as error:
        print_error(error, args)
        return exit_code_for(error)


if __name__ == "__main__":
    sys.exit(main())
