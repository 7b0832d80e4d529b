"""Token-bucket rate limits per user and per peer (docs/protocol.md §6).

A refused request is ``RATE_LIMITED`` with the seconds until a token is available, so
clients can back off precisely. Buckets idle long enough to be full again are dropped, which
bounds memory by the number of recently active keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pakr.proto.errors import ErrorKind, NodeRefusal

PRUNE_EVERY = 4096


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One bucket per key: ``rate`` tokens per second up to ``burst``; rate 0 = unlimited."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        self._calls = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Take one token; return 0.0 on success or the seconds to wait before retrying."""
        if self.rate <= 0:
            return 0.0
        self._calls += 1
        if self._calls % PRUNE_EVERY == 0:
            self._prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=self.burst, updated=now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        stale = [k for k, b in self._buckets.items() if now - b.updated >= full_after]
        for key in stale:
            del self._buckets[key]


class RateLimiter:
    """The per-user and per-peer limits of one node."""

    def __init__(self, user_rate: float, user_burst: int, peer_rate: float, peer_burst: int):
        self.users = TokenBuckets(user_rate, user_burst)
        self.peers = TokenBuckets(peer_rate, peer_burst)

    def check_peer(self, peer: str, now: float) -> None:
        """Before anything else (even token verification, which costs a signature check)."""
        self._refuse_if(self.peers.take(peer, now))

    def check_user(self, user_key: str, now: float) -> None:
        """After authentication, so nobody can drain another user's budget without a token."""
        self._refuse_if(self.users.take(user_key, now))

    @staticmethod
    def _refuse_if(wait: float) -> None:
        if wait > 0.0:
            retry = math.ceil(wait * 10) / 10
            raise NodeRefusal(
                ErrorKind.RATE_LIMITED,
                f"too many requests; retry after {retry:.1f} s",
                retry_after=retry,
            )
