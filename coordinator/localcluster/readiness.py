"""Waiting for a local cluster's processes to serve: one polling loop for nodes and the
coordinator alike.

Each target is probed with the standard gRPC health check over TLS pinned to its own
certificate until it reports SERVING; a target whose process has exited fails at once with
the end of its log (a port already taken is named as such), and the first one still not
serving at the deadline fails with its last probe error and its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pakr.coordinator.health import probe
from pakr.coordinator.localcluster.supervisor import ClusterStartError, Supervised, log_tail

# What `pakr node serve` prints when its port is taken (pakr.node.server).
PORT_IN_USE_MARKER = "the port is in use"
POLL_SECONDS = 0.1
PROBE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Target:
    """A process to wait for: its name in messages, where it serves, what it serves."""

    name: str
    proc: Supervised
    address: str
    cert: bytes
    service: str
    log: Path


def not_running(target: Target) -> ClusterStartError:
    """The error for a target whose process is gone, quoting the end of its log."""
    tail = log_tail(target.log)
    if PORT_IN_USE_MARKER in tail:
        return ClusterStartError(
            f"{target.name} cannot listen on {target.address}: the port is in use; stop the"
            " program holding it, or create the cluster in a fresh --dir with another --base-port"
        )
    code = target.proc.exit_code()
    return ClusterStartError(
        f"{target.name} is not running"
        + (f" (exit {code})" if code is not None else "")
        + f"; the end of {target.log}:\n{tail}"
    )


def wait_serving(
    targets: Sequence[Target],
    timeout: float,
    on_serving: Callable[[Target], None] | None = None,
) -> None:
    """Block until every target reports SERVING (``on_serving`` hears of each as it does)."""
    pending = list(targets)
    deadline = time.monotonic() + timeout
    last_error: dict[str, str] = {}
    while pending:
        for target in list(pending):
            if target.proc.pid() is None:
                raise not_running(target)
            result = probe(
                target.address, target.cert, service=target.service, timeout=PROBE_TIMEOUT
            )
            if result.serving:
                pending.remove(target)
                if on_serving is not None:
                    on_serving(target)
            else:
                last_error[target.name] = result.error
        if not pending:
            return
        if time.monotonic() >= deadline:
            late = pending[0]
            raise ClusterStartError(
                f"{late.name} did not become healthy within the timeout "
                f"({last_error.get(late.name, 'no answer')}); the end of {late.log}:\n"
                f"{log_tail(late.log)}"
            )
        time.sleep(POLL_SECONDS)
