"""User commands of the ``pakr`` CLI: register, recover, change-password, delete, status, token.

Each command is a thin shell over the SDK (``pakr.Client``); errors propagate as
``PakrError`` and ``pakr.coordinator.cli`` maps them to the exit codes of
:mod:`pakr.proto.exitcodes`. ``--manifest``, the token source and ``--tenant`` may also come
from the environment or a profile (:mod:`pakr.coordinator.settings`).

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
import getpass
import itertools
import json
import os
import secrets
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pakr.coordinator.output import emit
from pakr.coordinator.pins import add_pin_arguments, resolve_pin, serial_state_path
from pakr.proto.errors import ConfigError, InvalidAuth
from pakr.proto.exitcodes import ExitCode
from pakr.proto.files import create_private_file
from pakr.proto.messages import DEFAULT_MAX_GUESSES, MAX_GUESSES_LIMIT
from pakr.proto.seal import MAX_SECRET_LEN

if TYPE_CHECKING:
    from pakr import Client, NodeStatus, StatusReport

TOKEN_CMD_TIMEOUT = 10.0
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


def add_commands(subparsers: Any) -> None:
    """Register the user commands on the top-level ``pakr`` parser."""
    register = _command(
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

    recover = _command(
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

    change = _command(
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

    delete = _command(
        subparsers,
        "delete",
        "delete a user's secret on every node",
        "Replace every version of the user's secret with a tombstone. Irreversible. A user "
        "with no secret (never registered, or already deleted) exits 4.",
        "--user alice",
        password=False,
    )
    delete.set_defaults(func=_delete)

    status = _command(
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


def _command(
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


# -- tokens -----------------------------------------------------------------------------------


class CommandTokenProvider:
    """Runs ``--token-cmd`` for each token (async, so nodes are still asked in parallel)."""

    def __init__(self, command: str, tenant: str, scope: str = "user") -> None:
        try:
            self._argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"--token-cmd is not a valid command line: {exc}") from None
        if not self._argv:
            raise ConfigError("--token-cmd is empty")
        self._tenant = tenant
        self._scope = scope

    async def __call__(self, user_id: str, audience: str) -> str:
        import asyncio

        argv = [
            a.replace("{user}", user_id)
            .replace("{audience}", audience)
            .replace("{scope}", self._scope)
            for a in self._argv
        ]
        env = dict(os.environ, PAKR_USER_ID=user_id, PAKR_AUDIENCE=audience)
        env["PAKR_TENANT"] = self._tenant
        env["PAKR_SCOPE"] = self._scope
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise InvalidAuth(f"--token-cmd could not run: {exc.strerror}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), TOKEN_CMD_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise InvalidAuth(f"--token-cmd took longer than {TOKEN_CMD_TIMEOUT:g} s") from None
        if proc.returncode != 0:
            first = err.decode("utf-8", "replace").strip().splitlines()[:1]
            raise InvalidAuth(
                f"--token-cmd exited with {proc.returncode}" + (f": {first[0]}" if first else "")
            )
        token = out.decode("ascii", "replace").strip()
        if not token:
            raise InvalidAuth("--token-cmd printed no token")
        return token


def _token_setup(args: argparse.Namespace, scope: str = "user") -> tuple[str, Any]:
    from pakr import dev_token_provider

    if args.token_key is not None:
        provider = dev_token_provider(args.token_key).with_scope(scope)
        tenant = args.tenant or provider.tenant
        if tenant != provider.tenant:
            raise ConfigError(
                f"--tenant {tenant!r} does not match the --token-key's tenant {provider.tenant!r}"
            )
        return tenant, provider
    if not args.tenant:
        raise ConfigError("--tenant is required with --token-cmd")
    return args.tenant, CommandTokenProvider(args.token_cmd, args.tenant, scope)


# -- progress -----------------------------------------------------------------------------------


class Progress:
    """A one-line spinner on stderr while the SDK works; silent unless stderr is a TTY."""

    FRAMES = "|/-\\"

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._label = label
        self._phase = ""
        self._enabled = self._stream.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def phase(self, name: str, seconds: float) -> None:
        """SDK phase observer: show the last finished phase."""
        self._phase = f"{name} done ({seconds * 1000:.0f} ms)"

    def _spin(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            if self._stop.wait(0.1):
                break
            text = f"\r{frame} {self._label}" + (f": {self._phase}" if self._phase else "")
            self._stream.write(text[:79].ljust(79))
            self._stream.flush()

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._stream.write("\r" + " " * 79 + "\r")
            self._stream.flush()


@contextmanager
def client_for(
    args: argparse.Namespace, label: str, scope: str = "user"
) -> Iterator[tuple[Client, Progress]]:
    """A ``pakr.Client`` for the command's flags, with a spinner while it works."""
    from pakr import Client

    tenant, provider = _token_setup(args, scope)
    progress = Progress(label)
    client = Client.from_manifest(
        args.manifest,
        tenant=tenant,
        token_provider=provider,
        operator_key=resolve_pin(args),
        min_serial=args.min_serial,
        serial_state=serial_state_path(),
        deadline=args.deadline,
        on_phase=progress.phase,
    )
    try:
        with progress:
            yield client, progress
    finally:
        client.close()


# -- passwords ----------------------------------------------------------------------------------


class _Passwords:
    """Where passwords come from: stdin lines or terminal prompts."""

    def __init__(self, args: argparse.Namespace, lines: list[str] | None = None) -> None:
        self._stdin = bool(getattr(args, "password_stdin", False))
        self._lines: list[str] | None = lines
        if not self._stdin and not sys.stdin.isatty():
            raise ConfigError(
                "no terminal to ask for the password on: use --password-stdin to read it"
                " from standard input"
            )

    def _next_line(self) -> str:
        if self._lines is None:
            self._lines = sys.stdin.read().splitlines()
        if not self._lines:
            raise ConfigError("--password-stdin: not enough lines on standard input")
        return self._lines.pop(0)

    def ask(self, prompt: str, *, confirm: bool = False) -> str:
        """The next password (prompted twice with ``confirm``); never empty."""
        if self._stdin:
            password = self._next_line()
        else:
            password = getpass.getpass(prompt)
            if confirm and getpass.getpass("Repeat it: ") != password:
                raise ConfigError("the two passwords differ; nothing was changed")
        if not password:
            raise ConfigError("the password must not be empty")
        return password


# -- handlers -----------------------------------------------------------------------------------


def _read_secret(
    args: argparse.Namespace, stdin_lines: list[str] | None = None
) -> tuple[bytes, bool]:
    """The secret and whether it was generated; ``--secret-stdin`` pops its line off
    ``stdin_lines`` (so the password lines that follow stay for ``_Passwords``)."""
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
    password = _Passwords(args, lines).ask("New password: ", confirm=True)
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
    password = _Passwords(args).ask("Password: ")
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
    passwords = _Passwords(args)
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
