"""Every error the pakr SDK raises, in one tree (also importable from ``pakr`` itself).

Catch :class:`PakrError` for everything, a category base to decide whether to retry, or a
leaf to act on one outcome::

    PakrError
    ├── TransientError ........ the same call may succeed later: retry with backoff
    │   ├── ClusterUnavailable  too few nodes answered (.reasons per node, .answered/.needed)
    │   ├── NodeUnreachable ... one node gave no answer (raised by a NodeTransport; the SDK
    │   │                       folds these into ClusterUnavailable)
    │   ├── RateLimited ....... too many requests (.retry_after seconds)
    │   ├── Conflict .......... another operation on the same user won a race
    │   └── CommitIncomplete .. a registration reached too few nodes: call register again
    │                           with if_exists="replace"
    └── PermanentError ........ calling again unchanged gives the same answer
        ├── InvalidPassword ... wrong password (.guesses_remaining)
        │   └── LockedOut ..... too many wrong passwords: the secret is erased for good
        ├── NotRegistered ..... no secret for this user
        ├── AlreadyRegistered . register without if_exists="replace" (.version)
        ├── InvalidAuth ....... a node rejected the access token
        ├── UpgradeRequired ... a node speaks another protocol version
        ├── ProtocolError ..... a node misbehaved (.nodes names it)
        ├── WeakParameters .... Argon2id parameters outside the client's floor/ceiling
        └── ConfigError ....... a manifest, file or argument is invalid

When nodes fail differently, the SDK raises the most actionable error, in this order:
``InvalidPassword`` < ``NotRegistered`` < ``InvalidAuth`` < ``RateLimited`` <
``UpgradeRequired`` < ``Conflict`` < ``ProtocolError`` < ``ClusterUnavailable``.
Messages say what happened and what to do next, in one line; they never carry a password,
a secret, a share or a token.

The classes are defined in :mod:`pakr.proto.errors`, where the node and the protocol core
raise them too; this module is the SDK's public list. A retried ``recover`` spends a guess
like any other: retry a ``TransientError`` from ``recover`` only when the user asked to.
"""

from __future__ import annotations

from pakr.proto.errors import (
    AlreadyRegistered,
    ClusterUnavailable,
    CommitIncomplete,
    ConfigError,
    Conflict,
    InvalidAuth,
    InvalidPassword,
    LockedOut,
    NodeUnreachable,
    NotRegistered,
    PakrError,
    PermanentError,
    ProtocolError,
    RateLimited,
    TransientError,
    UpgradeRequired,
    WeakParameters,
)

__all__ = [
    "AlreadyRegistered",
    "ClusterUnavailable",
    "CommitIncomplete",
    "ConfigError",
    "Conflict",
    "InvalidAuth",
    "InvalidPassword",
    "LockedOut",
    "NodeUnreachable",
    "NotRegistered",
    "PakrError",
    "PermanentError",
    "ProtocolError",
    "RateLimited",
    "TransientError",
    "UpgradeRequired",
    "WeakParameters",
]
