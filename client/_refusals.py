"""What a node's failure means to the application: node answers → SDK errors (§7).

The transport reports raw per-node failures (a typed :class:`NodeRefusal`, a
:class:`NodeUnreachable`, a malformed reply). This module maps each to the SDK error an
application acts on, and a failed step to the single most actionable error among its nodes.
Only the typed ``ErrorKind`` is used, never gRPC status codes or message text.
"""

from __future__ import annotations

from collections.abc import Mapping

from pakr.proto.errors import (
    ClusterUnavailable,
    Conflict,
    ErrorKind,
    InvalidAuth,
    MalformedMessage,
    NodeRefusal,
    NodeUnreachable,
    NotRegistered,
    PakrError,
    ProtocolError,
    RateLimited,
    UpgradeRequired,
    most_actionable,
)
from pakr.proto.messages import NodeRef

# What a person can do about an unreachable node, by the words gRPC and the OS use for it
# (first match wins; the full text stays in ``ClusterUnavailable.details``).
_SHORT_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("connection refused",), "connection refused (is the node running?)"),
    (("deadline exceeded", "deadline_exceeded", "timed out", "timeout"), "no answer in time"),
    (
        ("certificate", "ssl", "tls", "handshake"),
        "TLS handshake failed (certificate not the one the manifest pins?)",
    ),
    (("name or service not known", "dns", "resolve"), "host name does not resolve"),
    (("no route", "network is unreachable", "host is unreachable"), "network unreachable"),
    (("connection reset", "socket closed", "broken pipe"), "connection dropped"),
    (("draining",), "shutting down (draining)"),
)
SHORT_REASON_LEN = 80


def reason(error: PakrError) -> str:
    """A short, secret-free reason for one node's failure: what a person can act on."""
    if isinstance(error, NodeUnreachable):
        text = str(error)
        lowered = text.lower()
        for needles, short in _SHORT_REASONS:
            if any(needle in lowered for needle in needles):
                return short
        return _clip(text)
    if isinstance(error, NodeRefusal):
        return _clip(f"{error.kind.name.lower()}: {error}")
    return _clip(str(error) or type(error).__name__)


def detail(error: PakrError) -> str:
    """The full text of one node's failure (gRPC's words), for logs and ``--verbose``."""
    if isinstance(error, NodeRefusal):
        return f"{error.kind.name.lower()}: {error}"
    return str(error) or type(error).__name__


def _clip(text: str) -> str:
    first = text.splitlines()[0] if text else text
    return first if len(first) <= SHORT_REASON_LEN else first[: SHORT_REASON_LEN - 1] + "…"


def classify(node: NodeRef, error: PakrError) -> PakrError | None:
    """The SDK error one node's failure stands for; ``None`` if it only means "no answer"."""
    if isinstance(error, NodeUnreachable):
        return None
    if isinstance(error, MalformedMessage):
        return ProtocolError([node.name], f"malformed reply: {error}")
    if not isinstance(error, NodeRefusal):
        return error
    kind = error.kind
    message = f"{node.name}: {error}"
    if kind is ErrorKind.INVALID_AUTH:
        return InvalidAuth(f"{node.name} rejected the access token: {error}")
    if kind is ErrorKind.NOT_REGISTERED:
        return NotRegistered()
    if kind in (ErrorKind.NO_GUESSES, ErrorKind.LOCKED):
        # One node's "locked" is a claim, not a lockout: recovery decides ``LockedOut`` by
        # counting (pakr.proto.choice.lockout_is_certain); alone it means "cannot serve".
        return None
    if kind is ErrorKind.RATE_LIMITED:
        return RateLimited(error.retry_after or 1.0)
    if kind is ErrorKind.UPGRADE_REQUIRED:
        return UpgradeRequired(message)
    if kind is ErrorKind.CONFLICT:
        return Conflict(f"concurrent registration for this user ({message}); try again")
    if kind is ErrorKind.STALE_ATTEMPT:
        # Another client's recovery of the same user replaced ours at this node (the node
        # keeps one open attempt per user): nothing is wrong, the guess stays counted.
        return Conflict(
            f"another recovery of this user ran at the same time ({node.name}); try again"
        )
    if kind in (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL, ErrorKind.UNSPECIFIED):
        return None
    # INVALID_REQUEST, BAD_UNLOCK_TAG: this client computed the request
    # correctly, so the node (or the cluster's state) is inconsistent.
    return ProtocolError([node.name], str(error))


def step_failure(
    step: str, errors: Mapping[NodeRef, PakrError], *, have: int, need: int
) -> PakrError:
    """The error to raise when ``step`` got ``have`` good answers out of ``need``.

    The most actionable classified error wins; ``ClusterUnavailable`` (naming every failed
    node and why) only when nothing more specific was reported.
    """
    reasons = {node.name: reason(err) for node, err in errors.items()}
    details = {node.name: detail(err) for node, err in errors.items()}
    candidates: list[PakrError] = []
    for node, err in errors.items():
        mapped = classify(node, err)
        if mapped is not None:
            candidates.append(mapped)
    candidates.append(
        ClusterUnavailable(
            reasons,
            f"cluster unavailable: {have} node(s) answered, {need} needed",
            details=details,
            answered=have,
            needed=need,
        )
    )
    return most_actionable(candidates)
