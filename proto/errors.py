"""The one exception hierarchy of pakr, rooted in :class:`PakrError`.

Every layer (protocol core, node, SDK, coordinator) raises these, so an application catches
``pakr.PakrError`` and nothing else. Messages say what happened and what to do about it; they
never carry a password, a secret, a share or a token.

The SDK-facing errors are those of docs/protocol.md §7. When several nodes fail differently the SDK
reports the *most actionable* one; that ordering lives in :func:`most_actionable`, once.

:class:`ErrorKind` is the typed kind that travels on the wire in the gRPC error detail, so the
node and the SDK agree on what went wrong without parsing message text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence


class ErrorKind(enum.IntEnum):
    """Typed error kinds carried in the wire error detail (``ErrorDetail.kind``).

    The numeric values are part of the wire contract (``node.proto``); never renumber.
    """

    UNSPECIFIED = 0
    INVALID_REQUEST = 1  # malformed field, bad encoding, oversized message
    INVALID_AUTH = 2  # token missing, expired, for another user/node/tenant, replayed
    NOT_REGISTERED = 3  # no such user, or no such version
    NO_GUESSES = 4  # guess limit reached for this version
    BAD_UNLOCK_TAG = 5  # Recover3 proof did not match (the guess stays counted)
    CONFLICT = 6  # concurrent registration / stale epoch / not the pending version
    RATE_LIMITED = 7
    UPGRADE_REQUIRED = 8  # the node does not speak the client's protocol_version
    LOCKED = 9  # the version was locked out and its shares erased
    UNAVAILABLE = 10  # the node is draining or its store is down
    INTERNAL = 11  # a bug on the node; details only in the node's log
    STALE_ATTEMPT = 12  # Recover3 names an attempt that is not the latest, or was used


class PakrError(Exception):
    """Root of every error pakr raises."""


class TransientError(PakrError):
    """The cluster could not complete the call now; the same call may succeed later.

    Retry after a pause (``RateLimited.retry_after`` says how long), with backoff: nodes
    were unreachable or too few answered, another operation on the user won a race, or a
    registration was left half-committed (call ``register`` again with
    ``if_exists="replace"``). A recovery retried spends one more guess.
    """


class PermanentError(PakrError):
    """Calling again unchanged gives the same answer; something must change first.

    A wrong password, a user with no secret, a rejected token, a node speaking another
    protocol version, a misbehaving node, unsafe parameters or an invalid argument.
    """


class InvalidPassword(PermanentError):
    """The password is wrong (or the version is locked out).

    ``guesses_remaining`` is how many more guesses the cluster will accept for this version.
    """

    def __init__(self, guesses_remaining: int, message: str | None = None) -> None:
        self.guesses_remaining = guesses_remaining
        super().__init__(
            message
            or (
                f"invalid password: {guesses_remaining} guess(es) remaining"
                if guesses_remaining > 0
                else "invalid password: no guesses remaining; the secret is locked out"
            )
        )


class LockedOut(InvalidPassword):
    """The secret is locked out for certain: too many nodes hold it locked, or no longer.

    Raised only when more than n - t of the nodes that answered before the deadline report
    the version locked (or out of guesses) or do not hold it, so fewer than t could ever
    serve it again (:func:`pakr.proto.choice.lockout_is_certain`). Anything less certain is
    ``ClusterUnavailable``: never re-register over a secret on a weaker signal than this.
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            0,
            message
            or "locked out: too many wrong passwords; the secret is erased, register a new one",
        )


class NotRegistered(PermanentError):
    """No secret is registered for this user (never registered, or deleted)."""

    def __init__(self, message: str = "no secret is registered for this user") -> None:
        super().__init__(message)


class AlreadyRegistered(PermanentError):
    """The user already has a secret and the registration did not ask to replace it.

    ``version`` is the registered version (hex) when the cluster settled on one. Pass
    ``if_exists="replace"`` (``pakr register --replace``) to replace it: the old secret is
    then gone for good.
    """

    def __init__(self, message: str, version: str | None = None) -> None:
        self.version = version
        super().__init__(message)


class InvalidAuth(PermanentError):
    """A node rejected the access token; mint a fresh token for that user and node."""


class RateLimited(TransientError):
    """Too many requests; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message or f"rate limited: retry after {retry_after:.1f} s")


class UpgradeRequired(PermanentError):
    """A node does not speak this client's protocol version; upgrade the SDK or the node."""


class Conflict(TransientError):
    """Another operation on the same user ran at the same time and won; try again.

    A concurrent registration, or a recovery from another client that replaced this one's
    open attempt at a node. Retrying is safe (exit code 5 on the command line).
    """


class ClusterUnavailable(TransientError):
    """Too few nodes answered to complete the operation.

    ``reasons`` maps each node that failed (by its name) to a short reason a person can act
    on ("connection refused", "no answer within the 5 s deadline"); ``details`` maps it to the
    full text its transport reported (gRPC's own words), for logs and ``--verbose``.
    ``summary`` is the first line without the per-node part; ``answered``/``needed`` count
    the good answers, when known.
    """

    def __init__(
        self,
        reasons: Mapping[str, str],
        message: str | None = None,
        *,
        details: Mapping[str, str] | None = None,
        answered: int | None = None,
        needed: int | None = None,
    ) -> None:
        self.reasons = dict(reasons)
        self.details = dict(details) if details is not None else dict(self.reasons)
        self.answered = answered
        self.needed = needed
        self.summary = message or "cluster unavailable: too few nodes answered"
        super().__init__(self.summary + (f" ({group_reasons(self.reasons)})" if reasons else ""))


def group_reasons(reasons: Mapping[str, str]) -> str:
    """``node1, node2: connection refused; node5: timeout``: one entry per distinct reason."""
    by_reason: dict[str, list[str]] = {}
    for node, why in sorted(reasons.items()):
        by_reason.setdefault(why, []).append(node)
    return "; ".join(f"{', '.join(nodes)}: {why}" for why, nodes in by_reason.items())


class ProtocolError(PermanentError):
    """A node misbehaved or the cluster is inconsistent; ``nodes`` names the culprits."""

    def __init__(self, nodes: Sequence[str], reason: str) -> None:
        self.nodes = list(nodes)
        self.reason = reason
        who = ", ".join(self.nodes) if self.nodes else "unknown node"
        super().__init__(f"protocol error from {who}: {reason}")


class WeakParameters(PermanentError):
    """Argon2id parameters outside the client's floor/ceiling, or nodes disagree on them."""


class CommitIncomplete(TransientError):
    """Too few nodes committed a new registration.

    The new password may or may not be in force; calling ``register`` again with
    ``if_exists="replace"`` is safe (the earlier call may have left a registered user).
    """


class ConfigError(PermanentError):
    """A manifest, config file or argument is invalid; the message names what to fix."""


class MalformedMessage(PakrError):
    """A field read off the wire or from storage has the wrong length or encoding."""


class NodeUnreachable(TransientError):
    """No usable answer from one node: refused connection, timeout, draining, TLS failure.

    What a :class:`~pakr.NodeTransport` raises when a node did not answer; the SDK folds
    these into :class:`ClusterUnavailable` when too few nodes answered. ``transient`` says
    whether asking the same node again right away may help (a refused connection may; a
    certificate that does not match the manifest's pin will not): the SDK retries those,
    except Recover2/Recover3.
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        self.transient = transient
        super().__init__(message)


class NodeRefusal(PakrError):
    """A node-side refusal with a typed :class:`ErrorKind`, turned into a gRPC status.

    Raised by the pure node steps (``pakr.proto.node_steps``) and by the node's servicer.
    Also what the SDK transport produces from a node's error detail before classifying it.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        guesses_remaining: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.guesses_remaining = guesses_remaining
        self.retry_after = retry_after
        super().__init__(message)


# Most actionable first: InvalidPassword < NotRegistered < InvalidAuth < RateLimited <
# UpgradeRequired < Conflict < ProtocolError < ClusterUnavailable (docs/protocol.md §7).
_ORDER: tuple[type[PakrError], ...] = (
    InvalidPassword,
    NotRegistered,
    InvalidAuth,
    RateLimited,
    UpgradeRequired,
    Conflict,
    ProtocolError,
    ClusterUnavailable,
)


def _rank(error: PakrError) -> int:
    for rank, cls in enumerate(_ORDER):
        if isinstance(error, cls):
            return rank
    return len(_ORDER)


def most_actionable(errors: Iterable[PakrError]) -> PakrError:
    """Return the error an application can act on best, per docs/protocol.md §7's order.

    Ties keep the first one seen, so callers control precedence among equals.
    """
    candidates = list(errors)
    if not candidates:
        raise ValueError("most_actionable() needs at least one error")
    return min(candidates, key=_rank)
