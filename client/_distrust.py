"""Per-client memory of nodes that misbehaved: asked last until the memory expires.

Recover1's ``guesses_remaining`` is a node's unauthenticated claim, and the client asks the
nodes with the fewest guesses left first. A node that lies about it would be asked first by
every recovery; once one of its replies has been set aside (failed verification, disagreed
with the nodes that unlocked the attempt, or did not decode), this client asks it last, for
``ttl`` seconds, whatever it claims. Its reply is replaced by a spare node's within the same
attempt, so the lie costs no attempt; the memory keeps it from costing time (and guesses at
the spare nodes) on every later recovery. The memory holds manifest nodes only, so it is
bounded by n.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pakr.proto.messages import NodeRef

DEFAULT_TTL = 3600.0
"""How long a set-aside node stays at the back of the queue (seconds)."""


class Distrust:
    """Nodes set aside recently by this client, each with the time its entry expires."""

    def __init__(
        self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._until: dict[NodeRef, float] = {}

    def remember(self, nodes: Iterable[NodeRef]) -> None:
        """Put ``nodes`` at the back of the queue for the next ``ttl`` seconds."""
        until = self._clock() + self.ttl
        for node in nodes:
            self._until[node] = until

    def current(self) -> frozenset[NodeRef]:
        """The nodes to ask last now (expired entries are dropped)."""
        now = self._clock()
        for node in [n for n, until in self._until.items() if until <= now]:
            del self._until[node]
        return frozenset(self._until)

    def __repr__(self) -> str:
        return f"Distrust({len(self._until)} node(s), ttl={self.ttl:g} s)"
