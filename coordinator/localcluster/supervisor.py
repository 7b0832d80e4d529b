"""Supervising local pakr processes: spawning, pid files, signals, reaping.

A local cluster's nodes (and coordinator) may be started by one ``pakr`` process and stopped
by another (``cluster up --detach`` then ``cluster down``), so every process is tracked by a
pid file next to its log, and a pid from a file is trusted only while that process's command
line still names its config: a recycled pid is never signalled. Processes are inspected
with psutil, so the guard holds on every platform psutil supports, not only where /proc is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal as signals
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

from pakr.proto.errors import PakrError
from pakr.proto.files import open_private_log
from pakr.proto.hostport import split_host_port

CRASH_ENV = ("PAKR_CRASH_AT", "PAKR_CRASH_AFTER")
STOP_TIMEOUT = 15.0
KILL_WAIT = 5.0  # how long a SIGKILLed process may take to be gone
LOG_TAIL_LINES = 20


class ClusterStartError(PakrError):
    """A node or the coordinator did not come up; the message quotes its log."""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the OS says are free right now (all bound at once, then freed)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now (nobody listens on it)."""
    return _bind_error(host, port) is None


def _bind_error(host: str, port: int) -> int | None:
    """The errno binding ``host:port`` here fails with, or None when it binds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno if exc.errno is not None else -1
    return None


def pakr_command(*args: str) -> list[str]:
    """The ``pakr`` CLI run with this interpreter (works in a venv without the script on PATH)."""
    return [sys.executable, "-m", "pakr.coordinator", *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: ours minus crash-test knobs, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in CRASH_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid``; ``None`` when it is gone or not ours to read."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:  # NoSuchProcess, ZombieProcess, AccessDenied
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited, unreaped zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def pid_from_file(pid_file: Path, marker: str) -> int | None:
    """The live pid recorded in ``pid_file`` if its command line contains ``marker``.

    The marker (the config path) guards against a recycled pid: we never signal a process
    that is not the one we started.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _alive(pid):
        return None
    cmdline = _cmdline(pid)
    if cmdline is None or marker not in cmdline:
        return None  # another program now has that pid (or one we may not even inspect)
    return pid


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class Supervised:
    """A supervised child: the Popen when we started it, else the pid from its pid file."""

    def __init__(self, name: str, pid_file: Path, marker: str, log: Path) -> None:
        self.name = name
        self.pid_file = pid_file
        self.marker = marker
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.signalled: int | None = None

    def pid(self) -> int | None:
        """The live pid (our child's, or the pid file's if it checks out), else ``None``."""
        if self.popen is not None:
            if self.popen.poll() is None:
                if _alive(self.popen.pid):
                    return self.popen.pid
                # Killed by someone else and already a zombie: its threads may still be
                # exiting, so reaping can take a moment.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=5.0)
                if self.popen.poll() is None:
                    return self.popen.pid
            self._reaped()
        # Not (or no longer) our child: maybe another `pakr cluster` process started it.
        return pid_from_file(self.pid_file, self.marker)

    def _reaped(self) -> None:
        """Forget our exited child; remove the pid file only if it still names that child."""
        assert self.popen is not None
        self.returncode = self.popen.returncode
        self._forget(self.popen.pid)
        self.popen = None

    def _forget(self, pid: int) -> None:
        try:
            if int(self.pid_file.read_text().strip()) == pid:
                self.pid_file.unlink()
        except (OSError, ValueError):
            pass

    def exit_code(self) -> int | None:
        """The exit status of the last child we reaped (negative: killed by that signal)."""
        return self.returncode

    def start(self, argv: list[str], cwd: Path, env: Mapping[str, str] | None) -> int:
        """Spawn ``argv`` in its own session (a terminal's Ctrl-C reaches only the supervisor),
        output appended to the log, pid recorded; returns the pid."""
        fd = open_private_log(self.log)
        with os.fdopen(fd, "ab") as log:
            log.write(f"--- pakr: starting {self.name} at {time.ctime()} ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(env),
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self.popen.pid}\n")
        return self.popen.pid

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if the process runs; whether it did."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        self.signalled = pid
        return True

    def wait(self, timeout: float) -> bool:
        """Wait until the process has exited; True when it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        if self.popen is not None:
            try:
                self.popen.wait(timeout=max(0.0, timeout))
            except subprocess.TimeoutExpired:
                return False
            self._reaped()
            return True
        # The pid we signalled (an exiting process may no longer pass pid_from_file's check).
        pid = self.signalled or pid_from_file(self.pid_file, self.marker)
        while pid is not None and _alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        if pid is not None:
            self._forget(pid)
        self.signalled = None
        return True


def stop_by_pid_files(dir: str | os.PathLike[str], timeout: float = STOP_TIMEOUT) -> int:
    """Stop every process a cluster under ``dir`` recorded in a pid file; how many were running.

    The last-resort cleanup (test finalizers, ``pakr cluster down`` without ``cluster.json``):
    it trusts a pid only when that process's command line names a file inside ``dir``.
    """
    root = Path(dir).resolve()
    procs = [
        Supervised(p.stem, p, str(root), p.with_suffix(".log")) for p in sorted(root.rglob("*.pid"))
    ]
    return stop_processes(procs, timeout)


def stop_processes(
    procs: Iterable[Supervised], timeout: float = STOP_TIMEOUT, sig: int = signals.SIGTERM
) -> int:
    """Send ``sig`` (default SIGTERM: drain) to each running process, wait for all of them
    together up to ``timeout``, SIGKILL whatever is left; how many were running."""
    signalled = [p for p in procs if p.signal(sig)]
    deadline = time.monotonic() + timeout
    for proc in signalled:
        if not proc.wait(max(0.0, deadline - time.monotonic())):
            proc.signal(signals.SIGKILL)
            proc.wait(KILL_WAIT)
    return len(signalled)


def check_ports_free(nodes: Iterable[tuple[str, str, Supervised]]) -> None:
    """Refuse, naming the port, when another program holds a stopped process's port
    (``nodes``: name, listen address, process)."""
    for name, address, proc in nodes:
        if proc.pid() is not None:
            continue
        host, port = split_host_port(address, f"{name} address")
        # EADDRNOTAVAIL: the address is not on this host (a node in its own network
        # namespace binds it there), so no program here can hold it
        if _bind_error(host, port) not in (None, errno.EADDRNOTAVAIL):
            raise ClusterStartError(
                f"port {port} of {name} ({address}) is taken by another program: stop it, or"
                " create a new cluster in a fresh --dir (optionally with --base-port)"
            )
