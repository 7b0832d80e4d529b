"""Send one protocol step to many nodes at once and collect enough answers.

Every step of PROTOCOL.md §3-5 goes to a set of nodes in parallel under one deadline. The step
is done as soon as it has the answers it needs plus a short *linger* (so a straggler a few
milliseconds behind still counts, which matters where every answer helps: epochs, version
choice, grouping), or as soon as the needed number can no longer be reached. Transient
failures are retried with jittered exponential backoff inside the deadline, except for
Recover2/Recover3, which spend or consume a guess and are never retried automatically.

Failures are kept per node, so the SDK can name them and turn typed refusals into the most
actionable SDK error (:mod:`pakr.refusals`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pakr.proto.errors import ErrorKind, NodeRefusal, PakrError
from pakr.proto.messages import NodeRef
from pakr.refusals import step_failure
from pakr.transport import NodeUnreachable

T = TypeVar("T")

NodeCall = Callable[[NodeRef, float], Awaitable[T]]
"""``(node, timeout_seconds) -> reply``: one attempt of a step at one node."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of transient failures: attempts per node and the backoff bounds (seconds).

    The delay before retry *k* is uniform in ``[0, min(max_delay, base_delay·2^k)]`` ("full
    jitter"), and never past the step's deadline.
    """

    attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 0.5
    max_rate_limit_wait: float = 2.0
    """A ``RateLimited`` refusal asking to wait at most this long is waited out and retried."""

    def delay(self, attempt: int) -> float:
        """The jittered pause before retry number ``attempt`` (1-based)."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))


NO_RETRY = RetryPolicy(attempts=1)


def is_transient(error: PakrError) -> bool:
    """Whether repeating the same request may get a different answer."""
    if isinstance(error, NodeUnreachable):
        return error.transient
    return isinstance(error, NodeRefusal) and error.kind is ErrorKind.UNAVAILABLE


def retry_pause(error: PakrError, attempt: int, retry: RetryPolicy) -> float | None:
    """How long to wait before retrying after ``error``, or ``None`` not to retry.

    Transient failures back off with jitter; a short ``RateLimited`` (a burst of operations
    on one user) is waited out for the time the node asked. Only steps that run with a
    retry policy get here: Recover2/Recover3 never do.
    """
    if attempt >= retry.attempts:
        return None
    if is_transient(error):
        return retry.delay(attempt)
    if (
        isinstance(error, NodeRefusal)
        and error.kind is ErrorKind.RATE_LIMITED
        and error.retry_after is not None
        and 0 < error.retry_after <= retry.max_rate_limit_wait
    ):
        return error.retry_after
    return None


@dataclass(slots=True)
class StepResult(Generic[T]):
    """The answers of one step: replies and failures, each by node."""

    step: str
    replies: dict[NodeRef, T] = field(default_factory=dict)
    errors: dict[NodeRef, PakrError] = field(default_factory=dict)

    def failure(self, need: int) -> PakrError:
        """The error to raise because fewer than ``need`` nodes answered well."""
        return step_failure(self.step, self.errors, have=len(self.replies), need=need)

    def require(self, need: int) -> dict[NodeRef, T]:
        """The replies, or raise :meth:`failure` when there are fewer than ``need``."""
        if len(self.replies) < need:
            raise self.failure(need)
        return self.replies


async def _attempt(
    node: NodeRef,
    call: NodeCall[T],
    deadline_at: float,
    retry: RetryPolicy,
) -> T:
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline_at - loop.time()
        if remaining <= 0:
            raise NodeUnreachable("deadline exceeded")
        try:
            return await call(node, remaining)
        except PakrError as error:
            pause = retry_pause(error, attempt, retry)
            if pause is None:
                raise
            if loop.time() + pause >= deadline_at:
                raise
            await asyncio.sleep(pause)


async def fan_out(
    step: str,
    nodes: Sequence[NodeRef],
    call: NodeCall[T],
    *,
    need: int,
    deadline: float,
    retry: RetryPolicy = NO_RETRY,
    linger: float = 0.05,
    wait_all: bool = False,
) -> StepResult[T]:
    """Run ``call`` at every node in parallel; return once ``need`` succeeded (+ linger).

    The linger after reaching ``need`` is ``max(linger, time taken so far)``: on a slow link
    stragglers get as long again. ``wait_all`` waits for every node instead (up to the
    deadline). Nodes still running at the end are cancelled and reported as not answering in
    time. Errors other than :class:`PakrError` (bugs) propagate after the other calls are
    cancelled.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline_at = started + deadline
    result: StepResult[T] = StepResult(step)
    tasks: dict[asyncio.Task[T], NodeRef] = {
        asyncio.ensure_future(_attempt(node, call, deadline_at, retry)): node for node in nodes
    }
    pending = set(tasks)
    cutoff = deadline_at
    try:
        while pending:
            timeout = cutoff - loop.time()
            if timeout <= 0:
                break
            done, pending = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                node = tasks[task]
                error = task.exception()
                if error is None:
                    result.replies[node] = task.result()
                elif isinstance(error, PakrError):
                    result.errors[node] = error
                else:
                    raise error
            if wait_all:
                continue
            if len(result.replies) >= need and cutoff == deadline_at:
                now = loop.time()
                cutoff = min(deadline_at, now + max(linger, now - started))
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    why = (
        "no answer before enough other nodes had answered"
        if cutoff < deadline_at
        else f"no answer within the {deadline:g} s deadline"
    )
    for task in pending:
        result.errors[tasks[task]] = NodeUnreachable(why)
    return result
