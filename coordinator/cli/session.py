"""What a user command needs to reach the cluster: tokens, progress, passwords, the client.

Tokens come from ``--token-key`` (minted locally from a tenant key, development) or
``--token-cmd`` (a program run once per node and call, without a shell); see
:mod:`pakr.coordinator.cli.arguments` for the flags and their help.
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from pakr.coordinator.cli.pins import resolve_pin, serial_state_path
from pakr.proto.errors import ConfigError, InvalidAuth

if TYPE_CHECKING:
    from pakr import Client

TOKEN_CMD_TIMEOUT = 10.0


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


def token_setup(args: argparse.Namespace, scope: str = "user") -> tuple[str, Any]:
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

    tenant, provider = token_setup(args, scope)
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


class Passwords:
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
