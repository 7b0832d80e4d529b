"""Key generations: what makes erasure real (crypto-shredding).

No database promises that an updated row, its WAL records or a backup are physically gone,
so a node never relies on it: each version's secret-bearing fields are sealed under a
*version key* of its own, and the version key is stored *wrapped* under a key generation.
Generations live in a directory of their own (never in the database, never in a backup),
one file per generation, each sealed under the node's data key. A new generation starts on
a schedule; a generation older than the retention window is destroyed once every live row
it wrapped has been re-wrapped under the newest one. A version locked out (or replaced, or
deleted) loses its wrapped key in the database, so it is never re-wrapped: when the
generations that wrapped it are destroyed, every copy of its sealed values, wherever it
survives, is ciphertext without a key.

Files (mode 0600 in a 0700 directory)::

    gen-00000007.key        {"generation": 7, "created_at": <unix>, "key": <b64 sealed key>}
    gen-00000003.destroyed  {"generation": 3, "created_at": ..., "destroyed_at": ...}

Every step is safe against kill -9: a new generation is written to a temporary file, fsynced
and hard-linked into place (exclusively: replicas sharing the directory cannot both make the
same generation); a destruction first replaces the key file by its ``.destroyed`` record (one
atomic rename over a fsynced temporary) and then removes the key file. A crash leaves either
the old state or the new one, never a generation half there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from pakr.node.store.base import StoreError
from pakr.proto.errors import ConfigError
from pakr.proto.files import (
    create_private_file,
    private_directory,
    sync_directory,
    write_private_file,
)

log = logging.getLogger("pakr.node.keys")

KEY_LEN = 32
NONCE_LEN = 12
LABEL_GENERATION = b"pakr/v1/key-generation"
STALE_TMP_SECONDS = 3600.0
_NAME = re.compile(r"^gen-(\d{8})\.(key|destroyed)$")


@dataclass(frozen=True, slots=True)
class Generation:
    """A key generation's public facts (its key stays inside the :class:`KeyRing`)."""

    number: int
    created_at: float


class KeyRing:
    """The node's key generations: in a directory, or in memory (tests and one-shot tools
    that never reopen a database). Thread-safe; the key bytes never appear in reprs."""

    def __init__(self, data_key: bytes, directory: Path | None = None) -> None:
        if len(data_key) != KEY_LEN:
            raise ValueError("the node data key must be 32 bytes")
        self._data = ChaCha20Poly1305(data_key)
        self.directory = directory
        self._lock = threading.Lock()
        self._keys: dict[int, bytes] = {}
        self._meta: dict[int, Generation] = {}
        self._destroyed: dict[int, float] = {}
        if directory is not None:
            private_directory(directory)
            self.reload()

    def __repr__(self) -> str:
        return f"KeyRing({self.directory or '<memory>'}, generations={sorted(self._keys)})"

    # ------------------------------------------------------------------ loading

    def reload(self) -> None:
        """Read the directory again (another replica may have rolled or destroyed)."""
        if self.directory is None:
            return
        keys: dict[int, bytes] = {}
        meta: dict[int, Generation] = {}
        destroyed: dict[int, float] = {}
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                # A write in progress (another replica), or one a crash interrupted.
                with contextlib.suppress(OSError):
                    if time.time() - path.stat().st_mtime > STALE_TMP_SECONDS:
                        path.unlink()
                continue
            match = _NAME.match(path.name)
            if match is None:
                continue
            number = int(match.group(1))
            doc = self._read_doc(path)
            if match.group(2) == "destroyed":
                destroyed[number] = float(doc.get("destroyed_at", 0.0))
                continue
            created = float(doc["created_at"])
            meta[number] = Generation(number, created)
            keys[number] = self._open_key(number, created, str(doc["key"]), path)
        for number in destroyed:
            # A crash after the .destroyed record landed but before the key file went.
            if number in keys:
                keys.pop(number)
                meta.pop(number)
                self._remove_key_file(number)
        with self._lock:
            self._keys, self._meta, self._destroyed = keys, meta, destroyed

    @staticmethod
    def _read_doc(path: Path) -> dict[str, Any]:
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"key file {path} is unreadable: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"key file {path} is not a key generation record")
        return doc

    def _ad(self, number: int, created_at: float) -> bytes:
        return LABEL_GENERATION + number.to_bytes(8, "big") + repr(float(created_at)).encode()

    def _open_key(self, number: int, created_at: float, sealed_b64: str, path: Path) -> bytes:
        try:
            sealed = base64.b64decode(sealed_b64, validate=True)
            return self._data.decrypt(
                sealed[:NONCE_LEN], sealed[NONCE_LEN:], self._ad(number, created_at)
            )
        except (ValueError, InvalidTag):
            raise ConfigError(
                f"key file {path} was sealed under another data key: use the node's own data"
                " key and key directory"
            ) from None

    # ------------------------------------------------------------------ queries

    def generations(self) -> list[Generation]:
        """Live generations, oldest first."""
        with self._lock:
            return [self._meta[n] for n in sorted(self._meta)]

    def destroyed(self) -> dict[int, float]:
        with self._lock:
            return dict(self._destroyed)

    def newest(self) -> Generation | None:
        with self._lock:
            return self._meta[max(self._meta)] if self._meta else None

    def current(self, now: float) -> tuple[int, bytes]:
        """The generation new version keys are wrapped under (created at first use)."""
        with self._lock:
            if self._keys:
                number = max(self._keys)
                return number, self._keys[number]
        self.roll(now)
        return self.current(now)

    def key(self, number: int) -> bytes:
        """A generation's key; ``StoreError`` when it is gone (destroyed or never here)."""
        with self._lock:
            found = self._keys.get(number)
        if found is None:
            self.reload()  # another replica may have rolled since we last looked
            with self._lock:
                found = self._keys.get(number)
        if found is not None:
            return found
        if number in self._destroyed:
            raise StoreError(
                f"key generation {number} was destroyed after its retention window: what it"
                " wrapped is erased"
            )
        raise StoreError(
            f"key generation {number} is not in the key directory ({self.directory}): check"
            " keys.dir"
        )

    # ------------------------------------------------------------------ changes

    def roll(self, now: float) -> Generation:
        """Start a new generation (durable before it is used). Replicas sharing the
        directory may race: the file is created exclusively, and the loser adopts the
        winner's generation."""
        with self._lock:
            number = max([0, *self._keys, *self._destroyed]) + 1
            key = os.urandom(KEY_LEN)
            if self.directory is not None:
                nonce = os.urandom(NONCE_LEN)
                sealed = nonce + self._data.encrypt(nonce, key, self._ad(number, now))
                doc = {
                    "generation": number,
                    "created_at": now,
                    "key": base64.b64encode(sealed).decode("ascii"),
                }
                if not create_private_file(self._path(number, "key"), json.dumps(doc).encode()):
                    number = -1  # another process made this generation first
            if number > 0:
                self._keys[number] = key
                self._meta[number] = Generation(number, now)
        if number < 0:
            self.reload()
            newest = self.newest()
            assert newest is not None
            return newest
        log.info("started key generation %d", number)
        return Generation(number, now)

    def destroy(
        self,
        number: int,
        *,
        live_rows: int,
        now: float,
        crash: Callable[[str], None] | None = None,
    ) -> None:
        """Destroy generation ``number``; refuses while ``live_rows`` (rows still wrapped
        under it, counted by the caller just before) is not zero, or if it is the newest."""
        if live_rows:
            raise StoreError(
                f"key generation {number} still wraps {live_rows} live rows: re-wrap them first"
            )
        with self._lock:
            if number not in self._meta:
                return
            if number == max(self._meta):
                raise StoreError(f"key generation {number} is the newest: roll before destroying")
            created = self._meta[number].created_at
            if self.directory is not None:
                record = {"generation": number, "created_at": created, "destroyed_at": now}
                write_private_file(self._path(number, "destroyed"), json.dumps(record).encode())
                if crash is not None:
                    crash("mid_destroy")
            self._keys.pop(number)
            self._meta.pop(number)
            self._destroyed[number] = now
        self._remove_key_file(number)
        log.info("destroyed key generation %d", number)

    def _remove_key_file(self, number: int) -> None:
        if self.directory is None:
            return
        path = self._path(number, "key")
        try:
            # Overwrite before unlinking: a plain filesystem then keeps no copy of the key.
            size = path.stat().st_size
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"\0" * size)
                os.fsync(fd)
            finally:
                os.close(fd)
            path.unlink()
        except FileNotFoundError:
            return
        sync_directory(path.parent)

    def _path(self, number: int, suffix: str) -> Path:
        assert self.directory is not None
        return self.directory / f"gen-{number:08d}.{suffix}"
