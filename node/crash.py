"""Crash points for fault tests: ``PAKR_CRASH_AT=<rpc>.<point>`` kills the node with SIGKILL.

``rpc`` is one of register2, register3, recover2, recover3, delete; ``point`` is
``before_commit`` (the request is validated and authenticated, its store transaction has not
run) or ``after_commit`` (the store transaction committed, the reply is not sent yet).
``rotate`` has the points ``after_roll``, ``mid_rewrap``, ``before_destroy`` and
``mid_destroy`` of a key rotation. ``PAKR_CRASH_AFTER=N`` crashes on the N-th hit (default 1).
SIGKILL, not an exception: the process dies as it would on power loss, with no cleanup and no reply.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping

from pakr.proto.errors import ConfigError

log = logging.getLogger("pakr.node.crash")

RPCS = frozenset({"register2", "register3", "recover2", "recover3", "delete", "rotate"})
POINTS = frozenset(
    {
        "before_commit",
        "after_commit",
        # key rotation (``rotate.<point>``, pakr.node.keyrotation)
        "after_roll",
        "mid_rewrap",
        "before_destroy",
        "mid_destroy",
    }
)
ENV_AT = "PAKR_CRASH_AT"
ENV_AFTER = "PAKR_CRASH_AFTER"


class CrashPoints:
    """The armed crash point, if any (at most one per process)."""

    def __init__(self, at: str | None = None, after: int = 1) -> None:
        if at is not None:
            rpc, _, point = at.partition(".")
            if rpc not in RPCS or point not in POINTS:
                raise ConfigError(
                    f"{ENV_AT} must be <rpc>.<point> with rpc in {sorted(RPCS)} and point in"
                    f" {sorted(POINTS)}, got {at!r}"
                )
        if after < 1:
            raise ConfigError(f"{ENV_AFTER} must be >= 1")
        self.at = at
        self.after = after
        self.hits = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CrashPoints:
        env = os.environ if env is None else env
        at = env.get(ENV_AT) or None
        after_text = env.get(ENV_AFTER, "1")
        if not after_text.isdigit():
            raise ConfigError(f"{ENV_AFTER} must be a positive integer")
        return cls(at, int(after_text))

    def hit(self, rpc: str, point: str) -> None:
        """Kill this process now if ``rpc.point`` is armed and this is the N-th hit."""
        if self.at is None or self.at != f"{rpc}.{point}":
            return
        self.hits += 1
        if self.hits >= self.after:
            log.warning("crash point %s.%s reached: killing the node (SIGKILL)", rpc, point)
            os.kill(os.getpid(), signal.SIGKILL)
