"""Refusal logging bounded per peer: at most one line per peer per interval.

Every refused request is counted in the metrics (``pakr_node_requests_total``, by method and
outcome);
the log only needs to show that a peer is being refused and how often. Without a bound, a peer
sending garbage or hitting a rate limit makes the node write a line per request (issue 12,
finding 6). The table of peers is bounded too: when it is full and nothing in it is old enough
to drop, further peers are not logged (still counted in ``suppressed``) rather than refused.
"""

from __future__ import annotations

from collections.abc import Callable

LOG_INTERVAL = 10.0
MAX_PEERS = 10_000


class RefusalLog:
    """Decides whether to log a refusal for a peer; counts what it holds back."""

    def __init__(self, interval: float = LOG_INTERVAL, max_peers: int = MAX_PEERS) -> None:
        self.interval = interval
        self.max_peers = max_peers
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self.suppressed = 0

    def admit(
        self, peer: str, now: float, on_suppress: Callable[[], None] | None = None
    ) -> int | None:
        """``None`` to skip this line; else the number of refusals for ``peer`` held back
        since its last line (to include in this one)."""
        last = self._last.get(peer)
        if last is not None and now - last < self.interval:
            self._held[peer] = self._held.get(peer, 0) + 1
            self.suppressed += 1
            if on_suppress is not None:
                on_suppress()
            return None
        if last is None and len(self._last) >= self.max_peers:
            self._prune(now)
            if len(self._last) >= self.max_peers:
                self.suppressed += 1
                if on_suppress is not None:
                    on_suppress()
                return None
        self._last[peer] = now
        return self._held.pop(peer, 0)

    def _prune(self, now: float) -> None:
        for peer in [p for p, t in self._last.items() if now - t >= self.interval]:
            del self._last[peer]
            self._held.pop(peer, None)
