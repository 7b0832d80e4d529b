"""Owner-only files: what every layer of pakr writes that nobody else on the host may read.

Keys, configs, pins, logs: each is created mode 0600 (0700 for directories) from its first
byte, never created readable and tightened afterwards. Replacing writes go through a
temporary file, fsync and rename (and fsync of the directory), so a crash at any line leaves
the old file or the new one, never half of either. Here in :mod:`pakr.proto` because the SDK,
the node and the coordinator all write such files and may all import this layer.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def private_directory(directory: Path) -> None:
    """Create ``directory`` (and missing parents) mode 0700; tighten it if it exists."""
    directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        directory.chmod(PRIVATE_DIR_MODE)


def sync_directory(directory: Path) -> None:
    """fsync ``directory``, so a rename or link inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temporary(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600), replacing it atomically: a temporary file,
    fsync, rename, fsync of the directory."""
    tmp = _write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def create_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` (0600) atomically and exclusively: False when it already
    exists (written to a temporary file, fsynced, then hard-linked into place)."""
    tmp = _write_temporary(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    sync_directory(path.parent)
    return True


def open_private_log(path: Path) -> int:
    """A descriptor appending to ``path``, created 0600 (a log names users and peers)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE)
