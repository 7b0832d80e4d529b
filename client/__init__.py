"""pakr: recover a long-term secret from a password, held by t-of-n share-servers.

The SDK::

    import pakr

    with pakr.Client.from_manifest(
        "manifest.json",
        operator_key="ed25519:...",  # the cluster operator's public key, pinned
        serial_state="pakr-serials.json",  # optional: refuse manifest rollbacks
        tenant="acme",
        token_provider=pakr.dev_token_provider("acme.key"),
    ) as client:
        client.register("alice", "correct horse battery staple", secret)
        assert client.recover("alice", "correct horse battery staple") == secret

``pakr.AsyncClient`` is the asyncio face with the same methods; ``pakr.__version__`` the
installed version. Every error is a ``pakr.PakrError``; :mod:`pakr.errors` holds the tree
(retryable ``TransientError`` vs ``PermanentError``). :mod:`pakr.testing` is an in-process
fake cluster for applications' tests. ``__all__`` is the whole public API: every other
``pakr._*`` module is private. Names are loaded lazily (PEP 562) so that ``import pakr.node``
or ``import pakr.proto`` never pulls in the SDK.
"""

from __future__ import annotations

from importlib import import_module

# Not typing.TYPE_CHECKING: `import pakr` runs first in every `pakr` command, and importing
# typing (with re) there would widen the start-up window where Ctrl-C prints a traceback.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pakr._async_client import AsyncClient
    from pakr._audit import AuditEvent, AuditPage
    from pakr._fanout import RetryPolicy
    from pakr._operations.register import Registration
    from pakr._operations.status import NodeStatus, StatusReport
    from pakr._sync_client import Client
    from pakr._tokens import DevTokenProvider, TokenProvider, dev_token_provider
    from pakr._transport import GrpcTransport, NodeTransport, TransportFactory, grpc_transport
    from pakr._trust import SerialState, UnpinnedManifestWarning
    from pakr.errors import (
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
    from pakr.proto.manifest import INSECURE_UNPINNED, Manifest, load_manifest

# Where each public name lives (the modules are private: import from ``pakr``).
_EXPORTS = {
    "Client": "pakr._sync_client",
    "AsyncClient": "pakr._async_client",
    "Registration": "pakr._operations.register",
    "NodeStatus": "pakr._operations.status",
    "StatusReport": "pakr._operations.status",
    "AuditEvent": "pakr._audit",
    "AuditPage": "pakr._audit",
    "RetryPolicy": "pakr._fanout",
    "DevTokenProvider": "pakr._tokens",
    "TokenProvider": "pakr._tokens",
    "dev_token_provider": "pakr._tokens",
    "GrpcTransport": "pakr._transport",
    "NodeTransport": "pakr._transport",
    "TransportFactory": "pakr._transport",
    "grpc_transport": "pakr._transport",
    "SerialState": "pakr._trust",
    "UnpinnedManifestWarning": "pakr._trust",
    "INSECURE_UNPINNED": "pakr.proto.manifest",
    "Manifest": "pakr.proto.manifest",
    "load_manifest": "pakr.proto.manifest",
    "AlreadyRegistered": "pakr.errors",
    "ClusterUnavailable": "pakr.errors",
    "CommitIncomplete": "pakr.errors",
    "ConfigError": "pakr.errors",
    "Conflict": "pakr.errors",
    "InvalidAuth": "pakr.errors",
    "InvalidPassword": "pakr.errors",
    "LockedOut": "pakr.errors",
    "NodeUnreachable": "pakr.errors",
    "NotRegistered": "pakr.errors",
    "PakrError": "pakr.errors",
    "PermanentError": "pakr.errors",
    "ProtocolError": "pakr.errors",
    "RateLimited": "pakr.errors",
    "TransientError": "pakr.errors",
    "UpgradeRequired": "pakr.errors",
    "WeakParameters": "pakr.errors",
}

# The public submodules besides the names below (``pakr.proto``, ``pakr.node`` and
# ``pakr.coordinator`` are packages of their own, not the SDK).
_SUBMODULES = frozenset({"errors", "testing"})

__all__ = [
    "INSECURE_UNPINNED",
    "AlreadyRegistered",
    "AsyncClient",
    "AuditEvent",
    "AuditPage",
    "Client",
    "ClusterUnavailable",
    "CommitIncomplete",
    "ConfigError",
    "Conflict",
    "DevTokenProvider",
    "GrpcTransport",
    "InvalidAuth",
    "InvalidPassword",
    "LockedOut",
    "Manifest",
    "NodeStatus",
    "NodeTransport",
    "NodeUnreachable",
    "NotRegistered",
    "PakrError",
    "PermanentError",
    "ProtocolError",
    "RateLimited",
    "Registration",
    "RetryPolicy",
    "SerialState",
    "StatusReport",
    "TokenProvider",
    "TransientError",
    "TransportFactory",
    "UnpinnedManifestWarning",
    "UpgradeRequired",
    "WeakParameters",
    "dev_token_provider",
    "grpc_transport",
    "load_manifest",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the installed distribution's, so it cannot drift
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pakr")
        except PackageNotFoundError:
            return "0+unknown"
    if name in _SUBMODULES:  # `import pakr; pakr.testing` without importing it first
        return import_module(f"pakr.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pakr' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
