"""The exit codes of every pakr command, defined once.

``pakr`` (``pakr.coordinator.cli``) and ``python -m pakr.node`` both map a raised
:class:`~pakr.proto.errors.PakrError` to a code with :func:`exit_code_for`, and every
``--help`` prints :data:`EXIT_CODES_HELP`, so the documented list and the behaviour cannot
drift apart. It lives beside the error hierarchy because both CLIs (one in ``pakr.node``, one
in ``pakr.coordinator``) sit on top of it and neither may import the other.
"""

from __future__ import annotations

import enum

from pakr.proto.errors import (
    AlreadyRegistered,
    ClusterUnavailable,
    CommitIncomplete,
    ConfigError,
    Conflict,
    InvalidAuth,
    InvalidPassword,
    LockedOut,
    NotRegistered,
    PakrError,
    ProtocolError,
    WeakParameters,
)


class ExitCode(enum.IntEnum):
    """What a pakr process's exit status means."""

    OK = 0
    FAILED = 1  # anything else a node or the OS reported (a cluster that failed to start, ...)
    USAGE = 2  # bad arguments, config or manifest; a registered user without --replace
    INVALID_PASSWORD = 3
    NOT_REGISTERED = 4
    UNAVAILABLE = 5  # too few nodes answered (or the cluster cannot recover)
    AUTH = 6  # a node refused the access token
    PROTOCOL = 7  # a node misbehaved, or the cluster is inconsistent
    LOCKED_OUT = 8  # no guesses left anywhere that counts: the secret is locked out for good
    INTERRUPTED = 130  # Ctrl-C


_MEANING = {
    ExitCode.OK: "ok",
    ExitCode.FAILED: "failed (other error)",
    ExitCode.USAGE: "usage or config error",
    ExitCode.INVALID_PASSWORD: "invalid password",
    ExitCode.NOT_REGISTERED: "not registered",
    ExitCode.UNAVAILABLE: "cluster unavailable or busy (try again)",
    ExitCode.AUTH: "token refused",
    ExitCode.PROTOCOL: "protocol error",
    ExitCode.LOCKED_OUT: "locked out",
    ExitCode.INTERRUPTED: "interrupted",
}

EXIT_CODES_HELP = "Exit codes: " + ", ".join(f"{int(c)} {m}" for c, m in _MEANING.items()) + "."


def exit_code_for(error: PakrError) -> ExitCode:
    """The documented exit code for ``error``."""
    if isinstance(error, LockedOut):  # before its base class InvalidPassword
        return ExitCode.LOCKED_OUT
    if isinstance(error, InvalidPassword):
        return ExitCode.INVALID_PASSWORD
    if isinstance(error, NotRegistered):
        return ExitCode.NOT_REGISTERED
    if isinstance(error, ClusterUnavailable | CommitIncomplete | Conflict):
        return ExitCode.UNAVAILABLE
    if isinstance(error, InvalidAuth):
        return ExitCode.AUTH
    if isinstance(error, ProtocolError | WeakParameters):
        return ExitCode.PROTOCOL
    if isinstance(error, ConfigError | AlreadyRegistered):
        return ExitCode.USAGE
    return ExitCode.FAILED
