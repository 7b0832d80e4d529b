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

``pakr.AsyncClient`` is the asyncio face with the same methods. Every error is a
``pakr.PakrError``. Names are loaded lazily (PEP 562) so that ``import pakr.node`` or
``import pakr.proto`` never pulls in the SDK.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pakr.async_client import AsyncClient, TransportFactory, grpc_transport
    from pakr.fanout import RetryPolicy
    from pakr.operations.status import NodeStatus, StatusReport
    from pakr.proto.errors import (
        ClusterUnavailable,
        CommitIncomplete,
        ConfigError,
        Conflict,
        InvalidAuth,
        InvalidPassword,
        NotRegistered,
        PakrError,
        ProtocolError,
        RateLimited,
        UpgradeRequired,
        WeakParameters,
    )
    from pakr.proto.manifest import INSECURE_UNPINNED, Manifest, load_manifest
    from pakr.sync_client import Client
    from pakr.tokens import DevTokenProvider, TokenProvider, dev_token_provider
    from pakr.transport import GrpcTransport, NodeTransport, NodeUnreachable
    from pakr.trust import SerialState, UnpinnedManifestWarning

_EXPORTS = {
    "AsyncClient": "pakr.async_client",
    "TransportFactory": "pakr.async_client",
    "grpc_transport": "pakr.async_client",
    "Client": "pakr.sync_client",
    "RetryPolicy": "pakr.fanout",
    "NodeStatus": "pakr.operations.status",
    "StatusReport": "pakr.operations.status",
    "DevTokenProvider": "pakr.tokens",
    "TokenProvider": "pakr.tokens",
    "dev_token_provider": "pakr.tokens",
    "GrpcTransport": "pakr.transport",
    "NodeTransport": "pakr.transport",
    "NodeUnreachable": "pakr.transport",
    "Manifest": "pakr.proto.manifest",
    "INSECURE_UNPINNED": "pakr.proto.manifest",
    "SerialState": "pakr.trust",
    "UnpinnedManifestWarning": "pakr.trust",
    "load_manifest": "pakr.proto.manifest",
    "ClusterUnavailable": "pakr.proto.errors",
    "CommitIncomplete": "pakr.proto.errors",
    "ConfigError": "pakr.proto.errors",
    "Conflict": "pakr.proto.errors",
    "InvalidAuth": "pakr.proto.errors",
    "InvalidPassword": "pakr.proto.errors",
    "NotRegistered": "pakr.proto.errors",
    "PakrError": "pakr.proto.errors",
    "ProtocolError": "pakr.proto.errors",
    "RateLimited": "pakr.proto.errors",
    "UpgradeRequired": "pakr.proto.errors",
    "WeakParameters": "pakr.proto.errors",
}

__all__ = [
    "INSECURE_UNPINNED",
    "AsyncClient",
    "Client",
    "ClusterUnavailable",
    "CommitIncomplete",
    "ConfigError",
    "Conflict",
    "DevTokenProvider",
    "GrpcTransport",
    "InvalidAuth",
    "InvalidPassword",
    "Manifest",
    "NodeStatus",
    "NodeTransport",
    "NodeUnreachable",
    "NotRegistered",
    "PakrError",
    "ProtocolError",
    "RateLimited",
    "RetryPolicy",
    "SerialState",
    "StatusReport",
    "TokenProvider",
    "TransportFactory",
    "UnpinnedManifestWarning",
    "UpgradeRequired",
    "WeakParameters",
    "dev_token_provider",
    "grpc_transport",
    "load_manifest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pakr' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
