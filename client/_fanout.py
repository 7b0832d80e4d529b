"""Send one protocol step to many nodes at once and collect enough answers.

Every step of docs/protocol.md §3-5 goes to a set of nodes in parallel under one deadline. The step
is done as soon as it has the answers it needs plus a short *linger* (so a straggler a few
milliseconds behind still counts, which matters where every answer helps: epochs, version
choice, grouping), or as soon as the needed number can no longer be reached. Transient
failures are retried with jittered exponential backoff inside the deadline, except for
Recover2/Recover3, which spend or consume a guess and are never retried automatically.

Failures are kept per node, so the SDK can name them and turn typed refusals into the most
actionable SDK error (:mod:`pakr._refusals`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pakr._refusals import step_failure
from pakr.proto.errors import ErrorKind, NodeRefusal, NodeUnreachable, PakrError
from pakr.proto.messages import NodeRef

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


class InFlight(Generic[T]):
    """One protocol step running at several nodes, its answers collected as they arrive.

    :func:`fan_out` and :func:`hedged` drive one; an operation drives it directly when it can
    act on part of the answers while the rest are still coming (Recover1 settles the version
    at the t-th agreeing answer, and the stragglers arrive while Argon2id runs). Every call
    shares one deadline. :meth:`close` cancels what still runs and reports those nodes as not
    answering in time. Errors other than :class:`PakrError` (bugs) propagate from the waiting
    methods after the other calls are cancelled.
    """

    def __init__(
        self,
        step: str,
        call: NodeCall[T],
        *,
        deadline: float,
        retry: RetryPolicy = NO_RETRY,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.started = self._loop.time()
        self.deadline = deadline
        self.deadline_at = self.started + deadline
        self.result: StepResult[T] = StepResult(step)
        self._call = call
        self._retry = retry
        self._tasks: dict[asyncio.Task[T], NodeRef] = {}
        self._pending: set[asyncio.Task[T]] = set()
        self._cut_short = False
        self.enough_at: float | None = None
        """When :meth:`gather` first had ``need`` replies (loop time), if it did."""

    def launch(self, node: NodeRef) -> None:
        """Start the step at ``node`` (part of the same deadline)."""
        task = asyncio.ensure_future(_attempt(node, self._call, self.deadline_at, self._retry))
        self._tasks[task] = node
        self._pending.add(task)

    @property
    def running(self) -> int:
        """How many nodes have not answered yet."""
        return len(self._pending)

    def elapsed(self) -> float:
        """Seconds since the step started."""
        return self._loop.time() - self.started

    async def wait_one(self, until: float | None = None) -> bool:
        """Wait until at least one running call finishes, or ``until`` (loop time, default the
        deadline). False when nothing finished in time or nothing was running."""
        limit = self.deadline_at if until is None else min(until, self.deadline_at)
        timeout = limit - self._loop.time()
        if not self._pending or timeout <= 0:
            return False
        done, self._pending = await asyncio.wait(
            self._pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        await self._collect(done)
        return bool(done)

    def _harvest(self) -> set[asyncio.Task[T]]:
        """Take the calls that finished meanwhile (e.g. during Argon2id) out of pending."""
        done = {task for task in self._pending if task.done()}
        self._pending -= done
        return done

    async def _collect(self, done: set[asyncio.Task[T]]) -> None:
        for task in done:
            node = self._tasks[task]
            error = task.exception()
            if error is None:
                self.result.replies[node] = task.result()
            elif isinstance(error, PakrError):
                self.result.errors[node] = error
            else:
                await self.close()
                raise error

    async def gather(
        self,
        *,
        need: int,
        linger: float,
        wait_all: bool = False,
        settled: Callable[[StepResult[T]], bool] | None = None,
    ) -> StepResult[T]:
        """Wait until ``need`` replies plus the linger (see :func:`fan_out`), every node
        (``wait_all``), the deadline, or, sooner, until ``settled(result)`` says the answers
        so far decide the step (the others keep running: call again, or :meth:`close`)."""
        while self._pending:
            await self._collect(self._harvest())
            now = self._loop.time()
            if len(self.result.replies) >= need and self.enough_at is None:
                self.enough_at = now  # the linger runs from here, even across a settled return
            if settled is not None and settled(self.result):
                return self.result
            cutoff = self.deadline_at
            if self.enough_at is not None and not wait_all:
                cutoff = min(
                    self.deadline_at,
                    self.enough_at + max(linger, self.enough_at - self.started),
                )
            if now >= cutoff:
                self._cut_short = cutoff < self.deadline_at
                break
            await self.wait_one(until=cutoff)
        if len(self.result.replies) >= need and self.enough_at is None:
            self.enough_at = self._loop.time()
        return self.result

    async def close(self) -> StepResult[T]:
        """Cancel the calls still running; report them as not answering in time."""
        await self._collect(self._harvest())
        pending, self._pending = self._pending, set()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        why = (
            "no answer before enough other nodes had answered"
            if self._cut_short or self._loop.time() < self.deadline_at
            else f"no answer within the {self.deadline:g} s deadline"
        )
        for task in pending:
            self.result.errors[self._tasks[task]] = NodeUnreachable(why)
        return self.result


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
    flight: InFlight[T] = InFlight(step, call, deadline=deadline, retry=retry)
    for node in nodes:
        flight.launch(node)
    try:
        await flight.gather(need=need, linger=linger, wait_all=wait_all)
    finally:
        await flight.close()
    return flight.result


async def hedged(
    step: str,
    candidates: Sequence[NodeRef],
    call: NodeCall[T],
    *,
    need: int,
    deadline: float,
    hedge_after: float,
) -> StepResult[T]:
    """Run ``call`` at the first ``need`` candidates only; bring in the next one for every
    failure, and one more each ``hedge_after`` seconds without ``need`` replies.

    For the guess-spending steps (never retried): each node asked spends a guess, so ask as
    few as the step needs, in the caller's order of preference, while a dead or stalled node
    costs ``hedge_after`` rather than the whole deadline. Returns as soon as ``need`` replied;
    the calls still running are cancelled.
    """
    flight: InFlight[T] = InFlight(step, call, deadline=deadline)
    queue = list(candidates)
    loop = asyncio.get_running_loop()
    next_hedge = flight.started + hedge_after
    try:
        while len(flight.result.replies) < need:
            while queue and flight.running + len(flight.result.replies) < need:
                flight.launch(queue.pop(0))
            if not flight.running:
                break
            if await flight.wait_one(until=next_hedge if queue else None):
                continue
            now = loop.time()
            if now >= flight.deadline_at:
                break
            if queue and now >= next_hedge:
                flight.launch(queue.pop(0))
                next_hedge = now + hedge_after
    finally:
        await flight.close()
    return flight.result
