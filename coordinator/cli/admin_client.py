"""The operator's typed client of the coordinator's control-plane RPCs.

One method per RPC of ``pakr.v1.Coordinator``, each returning the typed reply; every gRPC
failure becomes one :class:`~pakr.proto.errors.ClusterUnavailable` naming the coordinator,
so the commands in :mod:`pakr.coordinator.cli.coordinator` never see a ``grpc.RpcError``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc

from pakr.coordinator.health import pinned_channel
from pakr.proto.channel import CONTROL_MESSAGE_BYTES
from pakr.proto.errors import ClusterUnavailable, ConfigError
from pakr.proto.v1 import coordinator_pb2 as cpb
from pakr.proto.v1 import coordinator_pb2_grpc as cpb_grpc

_T = TypeVar("_T")


class CoordinatorClient:
    """A blocking client of one coordinator, TLS pinned to its certificate; a context manager."""

    def __init__(self, address: str, cert: Path | None, *, timeout: float) -> None:
        try:
            pem = cert.read_bytes() if cert is not None else None
        except OSError as exc:
            raise ConfigError(f"cannot read --cert {cert}: {exc.strerror}") from None
        self.address = address
        self.timeout = timeout
        self._channel = pinned_channel(address, pem, max_message_bytes=CONTROL_MESSAGE_BYTES)
        self._stub = cpb_grpc.CoordinatorStub(self._channel)

    def cluster_health(self) -> cpb.ClusterHealthResponse:
        """Every node's health as the coordinator last probed it, and whether t can recover."""
        return self._call(
            lambda: self._stub.ClusterHealth(cpb.ClusterHealthRequest(), timeout=self.timeout)
        )

    def manifest_bytes(self) -> bytes:
        """The signed manifest document the coordinator serves (unverified bytes)."""
        reply = self._call(
            lambda: self._stub.GetManifest(cpb.GetManifestRequest(), timeout=self.timeout)
        )
        return bytes(reply.manifest)

    def _call(self, invoke: Callable[[], _T]) -> _T:
        try:
            return invoke()
        except grpc.RpcError as error:
            code = error.code().name if hasattr(error, "code") else "UNKNOWN"
            raise ClusterUnavailable(
                {"coordinator": code}, f"the coordinator at {self.address} did not answer"
            ) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
