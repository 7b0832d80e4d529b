"""User commands of the ``pakr`` CLI: register, recover, change-password, delete, status, token.

Each command is a thin shell over the SDK (``pakr.Client``); errors propagate as
``PakrError`` and ``pakr.coordinator.cli`` maps them to the exit codes of
:mod:`pakr.proto.exitcodes`. ``--manifest``, the token source and ``--tenant`` may also come
from the environment or a profile (:mod:`pakr.coordinator.cli.settings`).

Passwords are never taken as arguments (they would land in shell history and ``ps``): they
are prompted for on the terminal (twice when setting one) or read from standard input with
``--password-stdin`` (one per line: the password; for change-password the old then the new).

Tokens: ``--token-key FILE`` mints them locally from a tenant key (development), or
``--token-cmd CMD`` runs CMD once per node and call to print a token on stdout. CMD is split
like a shell command line but run without a shell; ``{user}`` and ``{audience}`` in it are
replaced by the user id and the node id (hex), which are also in the environment as
``PAKR_USER_ID`` and ``PAKR_AUDIENCE`` (plus ``PAKR_TENANT``). It must exit 0 within 10 s.

The SDK is imported inside the handlers, so other commands (``pakr node serve``) start fast.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakr.coordinator.cli.arguments import user_command
from pakr.coordinator.cli.exitcodes import ExitCode
from pakr.coordinator.cli.output import emit
from pakr.coordinator.cli.session import Passwords, client_for
from pakr.proto.errors import ConfigError
from pakr.proto.files import create_private_file
from pakr.proto.messages import DEFAULT_MAX_GUESSES, MAX_GUESSES_LIMIT
from pakr.proto.seal import MAX_SECRET_LEN

if TYPE_CHECKING:
    from pakr import NodeStatus, StatusReport


def add_commands(subparsers: Any) -> None:
    """Register the user commands on the top-level ``pakr`` parser."""
    register = user_command(
        subparsers,
        "register",
        "store a secret under a password (refuses a registered user without --replace)",
        "Register a secret of 0..128 bytes for a user. The password is asked for twice on "
        "the terminal, or read from stdin with --password-stdin. With --generate the new "
        "random secret is printed in hex on stdout. A user who already has a secret is "
        "refused unless --replace is given.",
        "--user alice --generate 32",
    )
    source = register.add_mutually_exclusive_group(required=True)
    source.add_argument("--secret-file", type=Path, metavar="F", help="read the secret from F")
    source.add_argument(
        "--secret-stdin",
        action="store_true",
        help="read the secret in hex from the first line of stdin (before the password lines"
        " of --password-stdin)",
    )
    # Refused with a pointer to the safe forms: argv is readable by every local user (ps).
    source.add_argument("--secret-hex", metavar="H", help=argparse.SUPPRESS)
    source.add_argument(
        "--generate",
        type=int,
        metavar="N",
        help=f"generate N random bytes (1..{MAX_SECRET_LEN}) and print them in hex",
    )
    register.add_argument(
        "--max-guesses",
        type=int,
        default=DEFAULT_MAX_GUESSES,
        metavar="K",
        help=f"wrong guesses before lockout, 1..{MAX_GUESSES_LIMIT}"
        f" (default: {DEFAULT_MAX_GUESSES})",
    )
    register.add_argument(
        "--replace",
        action="store_true",
        help="replace the secret of a user who is already registered (it cannot be recovered"
        " afterwards)",
    )
    register.set_defaults(func=_register)

    recover = user_command(
        subparsers,
        "recover",
        "recover a secret with its password (spends a guess if wrong)",
        "Recover a user's secret. Writes it to --out F (mode 0600), or to stdout: in hex "
        "with --hex or when stdout is a terminal, raw bytes otherwise (JSON with --json).",
        "--user alice --hex",
    )
    out = recover.add_mutually_exclusive_group()
    out.add_argument(
        "--out", type=Path, metavar="F", help="write the secret to the new file F (mode 0600)"
    )
    out.add_argument("--hex", action="store_true", help="print the secret in hex")
    recover.set_defaults(func=_recover)

    change = user_command(
        subparsers,
        "change-password",
        "replace a user's password (needs the old one)",
        "Recover the secret with the old password and register it under the new one. The old "
        "password stays valid until the new registration is committed. With "
        "--password-stdin, stdin holds the old password then the new one, one per line.",
        "--user alice",
    )
    change.add_argument(
        "--max-guesses", type=int, metavar="K", help="new guess limit (default: keep the old)"
    )
    change.set_defaults(func=_change_password)

    delete = user_command(
        subparsers,
        "delete",
        "delete a user's secret on every node",
        "Replace every version of the user's secret with a tombstone. Irreversible. A user "
        "with no secret (never registered, or already deleted) exits 4.",
        "--user alice",
        password=False,
    )
    delete.set_defaults(func=_delete)

    status = user_command(
        subparsers,
        "status",
        "show whether a user is registered and the guesses left per node",
        "Ask every node about the user (spends nothing). Exit 0 when registered, 4 when the "
        "cluster says the user has no secret, 5 when too few nodes answered to tell.",
        "--user alice",
        password=False,
    )
    status.set_defaults(func=_status)

    token = subparsers.add_parser(
        "token", help="access tokens (development)", description="Mint access tokens."
    )
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = token_sub.add_parser(
        "issue",
        help="mint a token for a user at one node (or every node of a manifest)",
        description="Mint an EdDSA access token with a tenant key file, as a tenant's backend "
        "does after its own login. A token is valid at one node: give --audience (node id "
        "hex), or --manifest to print one JSON line per node.",
        epilog="example:\n  pakr token issue --tenant-key cluster/tenants/dev.key --user alice"
        " --manifest cluster/manifest.json",
    )
    issue.add_argument(
        "--tenant-key", type=Path, required=True, metavar="FILE", help="the tenant's key file"
    )
    issue.add_argument("--user", required=True, metavar="U", help="user id")
    issue.add_argument(
        "--ttl", type=int, default=300, metavar="SECONDS", help="lifetime in seconds"
    )
    issue.add_argument("--audience", metavar="HEX", help="the node id (32 hex characters)")
    issue.add_argument("--manifest", type=Path, metavar="M", help="one token per node of M")
    issue.add_argument(
        "--scope",
        choices=("user", "audit"),
        default="user",
        help="user: the user's own operations; audit: read the audit log",
    )
    issue.set_defaults(func=_token_issue)


# -- handlers -----------------------------------------------------------------------------------


def _read_secret(
    args: argparse.Namespace, stdin_lines: list[str] | None = None
) -> tuple[bytes, bool]:
    """The secret and whether it was generated; ``--secret-stdin`` pops its line off
    ``stdin_lines`` (so the password lines that follow stay for ``Passwords``)."""
    if getattr(args, "secret_hex", None) is not None:
        raise ConfigError(
            "--secret-hex is refused: a command line is readable by every local user (ps);"
            " use --secret-file F or --secret-stdin"
        )
    if args.secret_file is not None:
        try:
            return args.secret_file.read_bytes(), False
        except OSError as exc:
            raise ConfigError(f"cannot read {args.secret_file}: {exc.strerror}") from None
    if getattr(args, "secret_stdin", False):
        if not stdin_lines:
            raise ConfigError("--secret-stdin: standard input is empty; give the secret in hex")
        try:
            return bytes.fromhex(stdin_lines.pop(0).strip()), False
        except ValueError:
            raise ConfigError("--secret-stdin: the first line is not valid hex") from None
    if not 1 <= args.generate <= MAX_SECRET_LEN:
        raise ConfigError(f"--generate takes 1..{MAX_SECRET_LEN} bytes")
    return secrets.token_bytes(args.generate), True


def _register(args: argparse.Namespace) -> int:
    lines = sys.stdin.read().splitlines() if getattr(args, "secret_stdin", False) else None
    secret, generated = _read_secret(args, lines)
    if len(secret) > MAX_SECRET_LEN:
        raise ConfigError(f"the secret is {len(secret)} bytes; at most {MAX_SECRET_LEN}")
    password = Passwords(args, lines).ask("New password: ", confirm=True)
    with client_for(args, "registering") as (client, _):
        result = client.register(
            args.user,
            password,
            secret,
            max_guesses=args.max_guesses,
            if_exists="replace" if args.replace else "refuse",
        )
    data: dict[str, Any] = {
        "user": args.user,
        "secret_bytes": len(secret),
        "version": result.version,
        "replaced": result.replaced,
    }
    if args.json:
        if generated:
            data["secret_hex"] = secret.hex()
        print(json.dumps(data), flush=True)
    elif generated:
        print(secret.hex(), flush=True)
    line = f"registered a {len(secret)}-byte secret for {args.user!r}"
    if result.replaced is not None:
        line += f", replacing the earlier secret (version {result.replaced[:12]}…)"
    print(line, file=sys.stderr)
    return 0


def _write_new_file(path: Path, data: bytes) -> None:
    try:
        created = create_private_file(path, data)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    if not created:
        raise ConfigError(f"{path} exists; refusing to overwrite it")


def _recover(args: argparse.Namespace) -> int:
    password = Passwords(args).ask("Password: ")
    with client_for(args, "recovering") as (client, _):
        secret = client.recover(args.user, password)
    if args.out is not None:
        _write_new_file(args.out, secret)
        if args.json:
            print(json.dumps({"user": args.user, "out": str(args.out), "bytes": len(secret)}))
    elif args.json:
        print(json.dumps({"user": args.user, "secret_hex": secret.hex()}))
    elif args.hex or sys.stdout.isatty():
        print(secret.hex())
    else:
        sys.stdout.buffer.write(secret)
        sys.stdout.flush()
    return 0


def _change_password(args: argparse.Namespace) -> int:
    passwords = Passwords(args)
    old = passwords.ask("Current password: ")
    new = passwords.ask("New password: ", confirm=True)
    with client_for(args, "changing the password") as (client, _):
        client.change_password(args.user, old, new, max_guesses=args.max_guesses)
    emit(args, {"user": args.user, "password_changed": True}, None)
    print(f"password changed for {args.user!r}", file=sys.stderr)
    return 0


def _delete(args: argparse.Namespace) -> int:
    with client_for(args, "deleting") as (client, _):
        client.delete(args.user)
    emit(args, {"user": args.user, "deleted": True}, None)
    print(f"deleted the secret of {args.user!r}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    with client_for(args, "asking the nodes") as (client, _):
        report = client.status(args.user)
    emit(args, asdict(report), lambda: _status_text(report), indent=2)
    if report.registered is None:
        return ExitCode.UNAVAILABLE
    return 0 if report.registered else ExitCode.NOT_REGISTERED


def _status_text(report: StatusReport) -> str:
    verdict = {True: "registered", False: "not registered", None: "unknown"}[report.registered]
    head = f"user {report.user_id!r}: {verdict}"
    if report.locked_out:
        head = f"user {report.user_id!r}: locked out (too many wrong passwords; register anew)"
        return "\n".join([head, *(f"  {n.name}: {_node_text(n)}" for n in report.nodes)])
    if report.guesses_remaining is not None:
        head += f", {report.guesses_remaining} guess(es) left"
    lines = [head + (f" ({report.problem})" if report.problem else "")]
    lines.extend(f"  {node.name}: {_node_text(node)}" for node in report.nodes)
    return "\n".join(lines)


def _node_text(node: NodeStatus) -> str:
    if not node.reachable:
        return f"unreachable: {node.error}"
    if node.locked:
        return "locked out"
    if node.guesses_remaining is not None:
        return f"{node.guesses_remaining} guess(es) left"
    return "deleted" if node.deleted else "no version"


def _token_issue(args: argparse.Namespace) -> int:
    from pakr.proto.manifest import INSECURE_UNPINNED, load_manifest
    from pakr.proto.tokens import TenantKey, issue_token

    key = TenantKey.load(args.tenant_key)
    if args.audience is not None:
        audience = args.audience.lower()
        if len(audience) != 32 or any(c not in "0123456789abcdef" for c in audience):
            raise ConfigError("--audience must be a node id: 32 hex characters")
        token = issue_token(
            key, user_id=args.user, audience=audience, ttl=args.ttl, scope=args.scope
        )
        print(json.dumps({"node_id": audience, "token": token}) if args.json else token)
        return 0
    if args.manifest is None:
        raise ConfigError("give --audience (a node id) or --manifest (one token per node)")
    # Only the node ids are read (token audiences): a substituted manifest yields tokens no
    # real node accepts, and the commands that use them check the pin themselves.
    for node in load_manifest(args.manifest, operator_key=INSECURE_UNPINNED).nodes:
        token = issue_token(
            key, user_id=args.user, audience=node.id_hex, ttl=args.ttl, scope=args.scope
        )
        print(json.dumps({"node_id": node.id_hex, "index": node.index, "token": token}))
    return 0
