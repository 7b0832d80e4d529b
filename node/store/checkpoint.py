"""Background WAL checkpoints for the SQLite store: erasures reach the file without stalls.

After a commit that erased sealed values the WAL still holds their old page images. The
store's writer tries one checkpoint at once that never waits for readers; when a reader
holds an older snapshot (a long query, a copy tool) the :class:`Checkpointer` retries on a
connection of its own, with back-off, and logs while it cannot finish. Requests never wait.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger("pakr.node.store")

CHECKPOINT_RETRY_SECONDS = (0.05, 0.2, 1.0, 5.0)
"""Back-off of a WAL checkpoint that a reader's old snapshot keeps from finishing."""


class Checkpointer:
    """Folds the WAL into the (securely deleted) database file after an erase, in the
    background on a connection of its own, so a reader holding an old snapshot (a long
    query, a copy tool) never stalls the writer: a checkpoint that cannot finish is logged
    and retried with back-off until the reader lets go."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wanted = threading.Event()
        self._stop = False
        self.busy = 0  # checkpoints that a reader kept from finishing
        self._thread = threading.Thread(target=self._run, name="pakr-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._wanted.set()

    @property
    def pending(self) -> bool:
        return self._wanted.is_set()

    def stop(self) -> None:
        self._stop = True
        self._wanted.set()
        self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wanted.wait()
                if self._stop:
                    return
                if conn is None:
                    conn = sqlite3.connect(self._path, isolation_level=None)
                    conn.execute("PRAGMA busy_timeout = 0")  # never wait: retry later
                attempt = 0
                while not self._stop and not self._try(conn, attempt):
                    time.sleep(
                        CHECKPOINT_RETRY_SECONDS[min(attempt, len(CHECKPOINT_RETRY_SECONDS) - 1)]
                    )
                    attempt += 1
        finally:
            if conn is not None:
                conn.close()

    def _try(self, conn: sqlite3.Connection, attempt: int) -> bool:
        self._wanted.clear()
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            busy = 1
            detail = str(exc)
        else:
            detail = "a reader holds an older snapshot"
        if not busy:
            if attempt:
                log.info("WAL checkpoint after an erase finished (retry %d)", attempt)
            return True
        self.busy += 1
        self._wanted.set()
        if attempt in (0, 3) or attempt % 60 == 0:
            log.warning("WAL checkpoint after an erase cannot finish yet (%s); retrying", detail)
        return False
