"""Rolling and destroying key generations (crypto-shredding), on a staggered schedule.

``rotate`` is one idempotent pass, run by every node's sweeper and by ``pakr node
rotate-keys``:

1. start a new generation when the node's schedule has passed a roll boundary;
2. for every older generation past the retention window: re-wrap the version keys still
   under it (only those rows, only their 60-byte wrapped keys) in bounded transactions, count
   what is left, and destroy it when nothing live uses it (destruction refuses otherwise).

A kill -9 at any line leaves a state the next pass finishes: a roll is one atomic file, each
re-wrap batch one transaction, a destruction one atomic rename plus an unlink
(:mod:`pakr.node.store.keys`). Nodes stagger their boundaries by a phase derived from their
node id, so a cluster never rotates everywhere at the same moment.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pakr.node.store.base import Store, StoreError
from pakr.node.store.keys import KeyRing

log = logging.getLogger("pakr.node.keys")

DEFAULT_ROLL_SECONDS = 86400.0
DEFAULT_RETENTION_SECONDS = 7 * 86400.0
REWRAP_BATCH = 2000


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """When generations roll and how long one lives (the erasure window)."""

    roll_seconds: float = DEFAULT_ROLL_SECONDS
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    phase: float = 0.0  # this node's offset into the roll period (staggering)

    @classmethod
    def for_node(
        cls,
        node_id: bytes,
        roll_seconds: float = DEFAULT_ROLL_SECONDS,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
    ) -> KeyPolicy:
        digest = int.from_bytes(hashlib.sha256(b"pakr/key-schedule" + node_id).digest()[:8], "big")
        phase = (digest % 1_000_000) / 1_000_000 * roll_seconds
        return cls(roll_seconds, retention_seconds, phase)

    def last_boundary(self, now: float) -> float:
        """The latest roll boundary at or before ``now``."""
        return math.floor((now - self.phase) / self.roll_seconds) * self.roll_seconds + self.phase


@dataclass(slots=True)
class RotationReport:
    rolled: int | None = None  # the generation started, if any
    rewrapped: int = 0
    destroyed: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # generation -> why it stays

    def to_json(self) -> dict[str, object]:
        return {
            "rolled": self.rolled,
            "rewrapped": self.rewrapped,
            "destroyed": self.destroyed,
            "refused": {str(k): v for k, v in self.refused.items()},
        }


Crash = Callable[[str], None]


def _no_crash(point: str) -> None:
    return None


async def rotate(
    store: Store, keys: KeyRing, policy: KeyPolicy, now: float, *, crash: Crash = _no_crash
) -> RotationReport:
    """One rotation pass (see the module docstring); safe to repeat and to interrupt."""
    report = RotationReport()
    keys.reload()
    newest = keys.newest()
    if newest is None or newest.created_at < policy.last_boundary(now):
        report.rolled = keys.roll(now).number
        crash("after_roll")
    newest = keys.newest()
    assert newest is not None
    for generation in keys.generations():
        if generation.number == newest.number:
            continue
        if now < generation.created_at + policy.retention_seconds:
            continue
        while True:
            done = await store.rewrap(generation.number, now=now, limit=REWRAP_BATCH)
            report.rewrapped += done
            if done:
                crash("mid_rewrap")
            if done < REWRAP_BATCH:
                break
        uses = (await store.key_generation_uses()).get(generation.number, 0)
        crash("before_destroy")
        try:
            keys.destroy(generation.number, live_rows=uses, now=now, crash=crash)
        except StoreError as exc:
            report.refused[generation.number] = str(exc)
            log.warning("key generation %d kept: %s", generation.number, exc)
            continue
        report.destroyed.append(generation.number)
    return report
