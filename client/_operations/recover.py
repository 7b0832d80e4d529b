"""Recover (docs/protocol.md §4): Recover1 → choose version → Argon2id → Recover2 → Recover3.

Recover1 goes to every node, and the version is settled as soon as t of them agree on it
(:func:`pakr.proto.choice.settled`): Argon2id starts at once while the other answers arrive.
Recover2 then goes to t nodes only, in the order :func:`~pakr.proto.choice.choose_version`
prefers (the same nodes every time, so ``max_guesses`` means what it says), and to the next
ones only when one fails, stalls or misbehaves; Recover3 goes to the nodes whose evaluations
unlocked the attempt. Fewer calls means less work for the nodes and for the client, and a
guess is counted by the nodes that evaluate it.

Recover2 spends a guess at every node it reaches and Recover3 consumes the attempt, so neither
is retried automatically: asking a further node is a first request there. The one exception is
a Recover2 that got no answer in time, asked once more when no other node is left: the same
attempt id and blinded element are a free replay at a node that counted it. Nodes whose
replies fail verification are named in a warning (logger ``pakr``) when enough honest nodes
remain to recover anyway, and in a ``ProtocolError`` otherwise; a reply that does not decode,
does not combine or does not verify is set aside and replaced by a spare node's in the same
attempt, and this client asks that node last afterwards (:mod:`pakr._distrust`). ``LockedOut``
only when it is certain (:func:`~pakr.proto.choice.lockout_is_certain`), counting every
Recover1 answer that arrives before the deadline. After a success, nodes holding the version
only as pending get a Register3 to roll them forward.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pakr._cluster import ClusterContext
from pakr._fanout import StepResult
from pakr._operations.heal import fill as heal_fill
from pakr._operations.heal import reset_counts
from pakr._operations.states import state_rpc
from pakr._passwords import stretch
from pakr._refusals import reason, step_failure
from pakr._transport import NodeTransport
from pakr.proto.choice import (
    VersionChoice,
    choose_version,
    guesses_left,
    lockout_is_certain,
    settled,
)
from pakr.proto.errors import (
    ClusterUnavailable,
    Conflict,
    ErrorKind,
    LockedOut,
    MalformedMessage,
    NodeRefusal,
    NodeUnreachable,
    NotRegistered,
    PakrError,
    ProtocolError,
)
from pakr.proto.messages import (
    NodeRef,
    Recover2Reply,
    Recover3Reply,
    Register3,
    UserRef,
    UserStatus,
)
from pakr.proto.recover import (
    PasswordMismatch,
    RecoveryAttempt,
    TooFewValid,
    UnlockedAttempt,
    admit_spares,
    finish_recover2,
    finish_recover3,
    start_recover2,
    verify_recover3_reply,
)
from pakr.proto.reset import reset_requests, reset_targets

log = logging.getLogger("pakr")


def decide(ctx: ClusterContext, user: UserRef, answers: StepResult[UserStatus]) -> VersionChoice:
    """The committed-first version choice (§4 step 2) from the Recover1 answers so far."""
    if len(answers.replies) < ctx.threshold:
        raise step_failure(
            "recover1", answers.errors, have=len(answers.replies), need=ctx.threshold
        )
    return choose_version(
        answers.replies,
        {node: reason(err) for node, err in answers.errors.items()},
        threshold=ctx.threshold,
        node_count=ctx.node_count,
        user=user,
        distrusted=ctx.distrust.current(),
    )


def _refine(
    ctx: ClusterContext, user: UserRef, early: VersionChoice, answers: StepResult[UserStatus]
) -> VersionChoice:
    """The choice again with every answer in: the same version, with all the nodes that can
    serve it (in order), the pending ones to roll forward and the suspects to name."""
    try:
        full = decide(ctx, user, answers)
    except PakrError:
        return early  # cannot happen once settled (see ``settled``); keep what Argon2 used
    if (full.version, full.epoch, full.argon2) != (early.version, early.epoch, early.argon2):
        return early
    return full


@dataclass(frozen=True, slots=True)
class Recovered:
    """A successful recovery: the secret, the version it came from, and what healing did."""

    secret: bytes = field(repr=False)
    choice: VersionChoice
    max_guesses: int  # the version's own limit, from its signed policy (checked)
    resets: int = 0  # non-releasing holders whose guess count was reset
    filled: bool = False  # the secret was re-registered to fill missing copies


async def recover(ctx: ClusterContext, user: UserRef, password: bytes) -> bytes:
    """Recover ``user``'s secret with ``password`` (raises ``InvalidPassword`` when wrong)."""
    return (await recover_outcome(ctx, user, password)).secret


async def recover_outcome(
    ctx: ClusterContext, user: UserRef, password: bytes, *, fill: bool = True
) -> Recovered:
    """:func:`recover`, healing on success: the guess counts of the holders that release no
    share are reset alongside Recover3 (§4a), pending holders rolled forward, and (with
    ``fill``) missing copies filled by one compare-and-swap re-registration (§4b)."""
    t = ctx.threshold
    flight = ctx.start("recover1", user, ctx.nodes, state_rpc("recover1", user))
    try:
        with ctx.phase("recover1"):
            await flight.gather(
                need=t, linger=ctx.linger, settled=lambda r: settled(r.replies, threshold=t)
            )
            early_answer = settled(flight.result.replies, threshold=t)
            if not early_answer:
                try:
                    decide(ctx, user, flight.result)
                except PakrError:
                    # Not decided by the answers so far (too few can serve, or none holds a
                    # version): every answer before the deadline counts, so wait for them.
                    await flight.gather(need=ctx.node_count, linger=ctx.linger, wait_all=True)
                await flight.close()  # decided the usual way: the stragglers are too late
            early = decide(ctx, user, flight.result)
        hedge_after = max(ctx.linger, 2 * flight.elapsed())
        with ctx.phase("argon2"):
            access_key, seed = await stretch(password, user, early.version, early.argon2)
        with ctx.phase("recover1-rest"):
            await flight.gather(need=t, linger=ctx.linger)
    finally:
        await flight.close()
    choice = _refine(ctx, user, early, flight.result) if early_answer else early
    answers = dict(flight.result.replies)
    for node in choice.suspects:
        log.warning(
            "recover: ignored %s: it reports other Argon2id parameters than the other nodes",
            node.name,
        )
    attempt = start_recover2(user, choice, access_key, seed, ctx.rng)
    del access_key, seed
    session = _Session(ctx, user, attempt, hedge_after)
    unlocked = await session.evaluate()
    targets = reset_targets(
        answers,
        version=choice.version,
        releasing=set(unlocked.requests),
        evaluated=session.asked,
    )
    resets = asyncio.ensure_future(
        reset_counts(
            ctx, user, reset_requests(unlocked.unlock_key, choice.version, answers, targets)
        )
    )
    try:
        secret = await session.release(unlocked)
    finally:
        reset_count = await resets  # finished before returning, success or not
    await roll_forward(ctx, user, choice)
    limit = unlocked.policy.max_guesses
    filled = fill and await heal_fill(ctx, user, password, secret, choice, answers, limit)
    return Recovered(
        secret=secret,
        choice=choice,
        max_guesses=unlocked.policy.max_guesses,
        resets=reset_count,
        filled=filled,
    )


class _Session:
    """Recover2 and Recover3 of one attempt: which nodes were asked, what they said."""

    def __init__(
        self, ctx: ClusterContext, user: UserRef, attempt: RecoveryAttempt, hedge_after: float
    ) -> None:
        self.ctx = ctx
        self.user = user
        self.attempt = attempt
        self.hedge_after = hedge_after
        self.spares: list[NodeRef] = list(attempt.choice.nodes)  # in order, not asked yet
        self.unanswered: list[NodeRef] = []  # asked, no answer in time: may be asked again
        choice = attempt.choice
        known = {*choice.nodes, *choice.cannot_serve, *choice.suspects}
        # Recover1 gave no (timely) answer: they may hold the version; a last resort.
        self.unheard: list[NodeRef] = [n for n in ctx.nodes if n not in known]
        self.asked_twice: set[NodeRef] = set()
        self.replies: dict[NodeRef, Recover2Reply] = {}  # evaluations still in play
        self.failures: dict[NodeRef, PakrError] = {}
        self.set_aside: dict[NodeRef, str] = {}  # misbehaved: named in the warning or error

    @property
    def asked(self) -> set[NodeRef]:
        """Every node asked for a Recover2 in this attempt (each may have counted it)."""
        return set(self.replies) | set(self.failures) | set(self.set_aside)

    async def _ask(self, need: int) -> dict[NodeRef, Recover2Reply]:
        """Recover2 at the next ``need`` spare nodes (more for failures and stragglers)."""
        request = self.attempt.request
        user = self.user

        async def evaluate(transport: NodeTransport, token: str, timeout: float) -> Recover2Reply:
            return await transport.recover2(user, token, request, timeout=timeout)

        step = await self.ctx.hedged_step(
            "recover2", user, self.spares, evaluate, need=need, hedge_after=self.hedge_after
        )
        asked = step.replies.keys() | step.errors.keys()
        self.spares = [n for n in self.spares if n not in asked]
        self.failures.update(step.errors)
        self.replies.update(step.replies)
        for node in step.replies:
            self.failures.pop(node, None)  # answered when asked again
        for node, error in step.errors.items():
            if isinstance(error, MalformedMessage):  # answered, but not a valid reply
                self._set_aside({node: f"malformed reply: {error}"})
            elif isinstance(error, NodeUnreachable) and node not in self.asked_twice:
                self.unanswered.append(node)
        return step.replies

    def _respare(self) -> bool:
        """When no spare is left, ask the nodes whose Recover1 answer did not arrive in time
        (they may well hold the version: a reply is verified like any other), then the nodes
        that did not answer Recover2 in time, once more.

        Asking again with the same attempt id and blinded element is free at a node that
        counted the first request (it replays its stored evaluation, same nonce) and a first
        request at one that never got it, so it never spends a second guess; a hedged call
        cancelled because others answered first is how an honest reply goes missing while
        liars take up places."""
        if self.spares:
            return True
        if self.unheard:
            self.spares, self.unheard = self.unheard, []
            return True
        if not self.unanswered:
            return False
        self.spares, self.unanswered = self.unanswered, []
        self.asked_twice.update(self.spares)
        return True

    def _set_aside(self, nodes: Mapping[NodeRef, str]) -> None:
        """Name ``nodes`` as misbehaving in this attempt and ask them last from now on."""
        self.set_aside.update(nodes)
        self.ctx.distrust.remember(nodes)
        for node in nodes:
            self.replies.pop(node, None)

    def _shortfall(self, step: str, have: int) -> PakrError:
        """The error when no spare node is left: ``LockedOut`` if that is certain, else a
        failure's kind if it is more actionable than a protocol error, else the nodes set
        aside, else the cluster unavailable."""
        choice = self.attempt.choice
        refused = {
            node
            for node, error in self.failures.items()
            if isinstance(error, NodeRefusal)
            and error.kind in (ErrorKind.LOCKED, ErrorKind.NO_GUESSES)
        }
        # A node refusing the version as not held (NOT_REGISTERED) at Recover2 lost it since
        # Recover1 or never answered it: a concurrent registration replaced it (a Conflict,
        # via ``_replaced``), never evidence that the secret is erased.
        unable = (refused | set(choice.cannot_serve)) - set(choice.moved_on)
        if lockout_is_certain(
            len(unable), threshold=self.ctx.threshold, node_count=self.ctx.node_count
        ):
            return LockedOut()
        error = _replaced(step_failure(step, self.failures, have=have, need=self.ctx.threshold))
        if self.set_aside and isinstance(error, ClusterUnavailable):
            reasons = "; ".join(f"{n.name}: {why}" for n, why in self.set_aside.items())
            return TooFewValid(self.set_aside, reasons, missing=self.ctx.threshold - have)
        return error

    async def evaluate(self) -> UnlockedAttempt:
        """Recover2 at t nodes, more as needed, until the password checks out (or not).

        Every reply that does not decode, combine or verify is set aside and replaced by a
        spare node's in this same attempt; valid replies that merely disagree stay in play
        until a group of t settles who was right.
        """
        t = self.ctx.threshold
        extra = 0  # further replies needed beyond t (valid replies that disagree)
        while True:
            short = max(t - len(self.replies), extra)
            if short > 0:
                if not self._respare():
                    raise self._shortfall("recover2", len(self.replies))
                await self._ask(short)
                extra = 0
                if len(self.replies) < t:
                    continue
            try:
                with self.ctx.phase("verify"):
                    unlocked = finish_recover2(self.attempt, self.replies, threshold=t)
            except TooFewValid as error:
                self._set_aside(error.set_aside)
                extra = error.missing
                continue
            except PasswordMismatch as error:
                self._set_aside(error.set_aside)
                for node, why in self.set_aside.items():
                    log.warning("recover: ignored %s's evaluation: %s", node.name, why)
                valid = {n: r for n, r in self.replies.items() if n not in self.set_aside}
                left = guesses_left(self.attempt.choice, valid, threshold=t)
                raise PasswordMismatch(left, error.set_aside) from None
            self._set_aside(unlocked.set_aside)
            for node, why in self.set_aside.items():
                log.warning("recover: ignored %s's evaluation: %s", node.name, why)
            return unlocked

    async def release(self, unlocked: UnlockedAttempt) -> bytes:
        """Recover3 at the nodes that unlocked the attempt; bring in spares for shortfalls."""
        t = self.ctx.threshold
        shares: dict[NodeRef, Recover3Reply] = {}
        bad: dict[NodeRef, str] = {}
        silent: dict[NodeRef, PakrError] = {}
        ask: list[NodeRef] = list(unlocked.requests)
        group_reply = self.replies[ask[0]]
        while True:
            step = await self._release(unlocked, ask)
            for node, error in step.errors.items():
                if isinstance(error, MalformedMessage):  # answered, but not a valid share
                    bad[node] = f"malformed reply: {error}"
                    self.ctx.distrust.remember((node,))
                else:
                    silent[node] = error
            shares.update(step.replies)
            if len(shares) >= t:
                try:
                    with self.ctx.phase("decrypt"):
                        secret = finish_recover3(unlocked, shares, threshold=t)
                except ProtocolError:
                    pass
                else:
                    _warn_release(unlocked, shares, bad, silent, threshold=t)
                    return secret
            forged = {
                node: why
                for node, share in shares.items()
                if (why := verify_recover3_reply(unlocked, node, share)) is not None
            }
            if len(shares) >= t and not forged:  # t valid shares and still no secret
                raise ProtocolError(
                    [n.name for n in shares], "the nodes' shares do not open the secret"
                )
            bad.update(forged)
            self.ctx.distrust.remember(forged)
            for node in forged:
                del shares[node]
            if not self._respare():
                if bad:
                    reasons = "; ".join(f"{n.name}: {why}" for n, why in bad.items())
                    raise ProtocolError([n.name for n in bad], reasons)
                raise _replaced(step_failure("recover3", silent, have=len(shares), need=t))
            spare = await self._ask(t - len(shares))
            unlocked, aside = admit_spares(unlocked, group_reply, spare)
            bad.update(aside)
            self.ctx.distrust.remember(aside)
            ask = [n for n in spare if n not in aside]

    async def _release(
        self, unlocked: UnlockedAttempt, nodes: Sequence[NodeRef]
    ) -> StepResult[Recover3Reply]:
        """Recover3 at ``nodes`` (each once: it consumes the attempt there)."""
        user = self.user

        async def release(transport: NodeTransport, token: str, timeout: float) -> Recover3Reply:
            request = unlocked.requests[transport.node]
            return await transport.recover3(user, token, request, timeout=timeout)

        return await self.ctx.step(
            "recover3", user, nodes, release, need=len(nodes), retry=False, wait_all=True
        )


def _replaced(error: PakrError) -> PakrError:
    """Recover2/Recover3 refused as NOT_REGISTERED: the nodes held the version at Recover1
    and no longer do, so a concurrent registration (another device's password change, or a
    fill) replaced it: a ``Conflict`` to start over, not "not registered"."""
    if isinstance(error, NotRegistered):
        return Conflict("the user's registration changed during this recovery; try again")
    return error


def _warn_release(
    unlocked: UnlockedAttempt,
    shares: Mapping[NodeRef, Recover3Reply],
    bad: Mapping[NodeRef, str],
    silent: Mapping[NodeRef, PakrError],
    *,
    threshold: int,
) -> None:
    """Name the nodes whose share was forged or missing although recovery succeeded.

    With exactly t shares a success means every one was valid; only a surplus (spares that
    answered together) can hide a forged share that was outvoted, so only then are they checked.
    """
    named = dict(bad)
    if len(shares) > threshold:
        for node, share in shares.items():
            why = verify_recover3_reply(unlocked, node, share)
            if why is not None:
                named[node] = why
    for node, why in named.items():
        log.warning("recover: ignored %s's share: %s", node.name, why)
    if silent:
        log.warning(
            "recover: %s did not release a share; recovered with the others",
            ", ".join(n.name for n in silent),
        )


async def roll_forward(ctx: ClusterContext, user: UserRef, choice: VersionChoice) -> None:
    """Commit the recovered version on nodes holding it only as pending (best effort)."""
    if not choice.pending_nodes:
        return
    request = Register3(version=choice.version)

    async def rpc(transport: NodeTransport, token: str, timeout: float) -> None:
        await transport.register3(user, token, request, timeout=timeout)

    result = await ctx.step(
        "roll-forward",
        user,
        choice.pending_nodes,
        rpc,
        need=len(choice.pending_nodes),
        wait_all=True,
        fresh_token=True,
    )
    for node, err in result.errors.items():
        log.warning("recover: could not roll %s forward: %s", node.name, reason(err))
