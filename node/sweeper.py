"""The sweeper: every node erases what is due without waiting for a request.

Every ``interval`` seconds it (1) erases the versions whose lockout is due — guesses spent
and the last attempt's grace over — and drops pending versions superseded by a committed one
(:meth:`~pakr.node.store.base.Store.sweep`), and (2) runs a key rotation pass
(:func:`~pakr.node.keyrotation.rotate`), which rolls generations on the node's staggered
schedule and destroys those past the retention window. A lockout is therefore erased from
the live database at most ``interval`` (plus one pass) after its grace ends, and from every
copy once the generation that wrapped it is destroyed (``retention`` after it started).
Failures are logged and retried on the next pass; they never stop the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pakr.node.keyrotation import KeyPolicy, RotationReport, rotate
from pakr.node.metrics import NodeMetrics
from pakr.node.store.base import Store, SweepResult
from pakr.node.store.keys import KeyRing

log = logging.getLogger("pakr.node.sweeper")

DEFAULT_INTERVAL_SECONDS = 15.0
PEER = "sweeper"


class Sweeper:
    def __init__(
        self,
        store: Store,
        keys: KeyRing,
        policy: KeyPolicy,
        metrics: NodeMetrics,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        crash: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self._crash = crash
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> tuple[SweepResult, RotationReport]:
        """One pass: sweep, then rotate keys."""
        now = self.clock()
        swept = await self.store.sweep(now, peer=PEER)
        if swept.locked:
            self.metrics.erasures.labels("lockout").inc(swept.locked)
            log.info("sweeper erased locked-out versions", extra={"fields": {"n": swept.locked}})
        if swept.superseded:
            self.metrics.erasures.labels("superseded").inc(swept.superseded)
        if self._crash is None:
            report = await rotate(self.store, self.keys, self.policy, now)
        else:
            report = await rotate(self.store, self.keys, self.policy, now, crash=self._crash)
        if report.destroyed:
            self.metrics.erasures.labels("key_generation").inc(len(report.destroyed))
        return swept, report

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeper pass failed; retrying on the next pass")
            await asyncio.sleep(self.interval)
