"""The refusals a node answers about a user's versions, one text each.

Every node implementation raises these (the stores' transactions, the servicer, and
``pakr.testing``'s in-process fake node), so an SDK sees the same kind and words from each.
"""

from __future__ import annotations

from pakr.proto.errors import ErrorKind, NodeRefusal


def not_registered() -> NodeRefusal:
    """The node holds no such version for the user (never registered, replaced, deleted)."""
    return NodeRefusal(ErrorKind.NOT_REGISTERED, "this node holds no such version for the user")


def locked_out() -> NodeRefusal:
    """The version is locked out: its shares are erased."""
    return NodeRefusal(ErrorKind.LOCKED, "this version is locked out", guesses_remaining=0)


def no_guesses() -> NodeRefusal:
    """The version's guess limit is spent (its lockout is not yet due)."""
    return NodeRefusal(
        ErrorKind.NO_GUESSES, "no guesses remain for this version", guesses_remaining=0
    )


def bad_unlock_tag(guesses_remaining: int) -> NodeRefusal:
    """Recover3's unlock proof did not match: the guess stays counted."""
    return NodeRefusal(
        ErrorKind.BAD_UNLOCK_TAG,
        "unlock proof does not match; the guess stays counted",
        guesses_remaining=guesses_remaining,
    )


def stale_attempt() -> NodeRefusal:
    """Recover3 names no open attempt of this node."""
    return NodeRefusal(
        ErrorKind.STALE_ATTEMPT,
        "no open Recover2 attempt with this id (used, replaced or never made);"
        " start a new recovery",
    )


def nonce_used() -> NodeRefusal:
    """ResetGuesses named a nonce this node already spent."""
    return NodeRefusal(ErrorKind.STALE_ATTEMPT, "reset nonce already used")
