"""A throwaway PostgreSQL server for tests and benchmarks.

``initdb`` + ``pg_ctl`` in a fresh temporary directory, listening only on a unix socket in that
directory, on a free port number (it names the socket). When we run as root (CI, sessions)
the server runs as the ``postgres`` system user through ``runuser``, because ``initdb``
refuses root; otherwise the binaries run directly. Binaries come from ``PATH`` or Debian's
``/usr/lib/postgresql/<version>/bin`` (newest first).

:func:`start_server` raises :class:`PostgresUnavailable` with the reason when the server
cannot start; the pytest fixtures turn that into a failure under ``CI`` and a skip locally.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

PG_USER = "postgres"
START_TIMEOUT = 60


class PostgresUnavailable(RuntimeError):
    """The throwaway server cannot start here; the message says why and what to install."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
        reverse=True,
    )
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) are not on PATH nor in"
        " /usr/lib/postgresql/*/bin: install Debian's postgresql package"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """A running throwaway server; :meth:`stop` removes it and its directory."""

    root: Path
    port: int
    bin_dir: Path
    as_postgres: bool

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def url(self, dbname: str = "postgres", *, options: str | None = None) -> str:
        """A libpq URL reaching ``dbname`` over the unix socket as user ``postgres``."""
        url = f"postgresql://{PG_USER}@/{dbname}?host={quote(self.socket_dir)}&port={self.port}"
        if options:
            url += "&options=" + quote(options)
        return url

    def create_database(self, prefix: str = "pakr") -> str:
        """CREATE DATABASE with a fresh name; returns its URL."""
        name = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40] + "_" + secrets.token_hex(4)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.split("/")[3].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", PG_USER, "--"] if self.as_postgres else []
        return [*prefix, str(self.bin_dir / args[0]), *args[1:]]

    def stop(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                self._cmd("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "log").read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def start_server(*, max_connections: int = 300, settings: dict[str, str] | None = None) -> PgServer:
    """initdb and start a server in a new temporary directory; the caller must :meth:`stop`."""
    bin_dir = find_bin_dir()
    as_postgres = os.geteuid() == 0
    if as_postgres and shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root but runuser is missing: cannot drop to postgres")
    root = Path(tempfile.mkdtemp(prefix="pakr-pg-", dir="/tmp"))
    server = PgServer(root=root, port=free_port(), bin_dir=bin_dir, as_postgres=as_postgres)
    try:
        if as_postgres:
            try:
                shutil.chown(root, user=PG_USER, group=None)
            except (LookupError, OSError) as exc:
                raise PostgresUnavailable(
                    f"cannot hand {root} to the postgres user: {exc}"
                ) from exc
            os.chmod(root, 0o700)
        init = subprocess.run(
            server._cmd(
                "initdb",
                "-D",
                str(root / "data"),
                "-A",
                "trust",
                "-U",
                PG_USER,
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        options = [
            f"-k {root}",
            f"-p {server.port}",
            "-c listen_addresses=''",
            f"-c max_connections={max_connections}",
        ]
        options += [f"-c {k}={v}" for k, v in (settings or {}).items()]
        start = subprocess.run(
            server._cmd(
                "pg_ctl",
                "-D",
                str(root / "data"),
                "-o",
                " ".join(options),
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                str(START_TIMEOUT),
                "start",
            ),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 10,
            check=False,
        )
        if start.returncode != 0:
            raise PostgresUnavailable(
                f"pg_ctl start failed: {start.stderr.strip()[-300:]}\n{server.log_tail()}"
            )
    except BaseException:
        server.stop()
        raise
    return server
