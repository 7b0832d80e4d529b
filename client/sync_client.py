"""``pakr.Client``: the blocking face of :class:`pakr.AsyncClient`.

Every method runs the async implementation on a private event-loop thread
(:mod:`pakr._sync`) and blocks until it finishes, so both faces behave identically.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from pakr._sync import LoopThread
from pakr.async_client import AsyncClient, ManifestSource
from pakr.operations.status import StatusReport
from pakr.passwords import Password
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import Manifest, OperatorPin
from pakr.proto.messages import DEFAULT_MAX_GUESSES
from pakr.tokens import TokenProvider
from pakr.trust import SerialState, load_trusted_manifest


class Client:
    """Register, recover, change and delete a user's secret on a pakr cluster (blocking).

    Same arguments and behaviour as :class:`pakr.AsyncClient`; use as a context manager
    (``with Client.from_manifest(...) as client:``) or call :meth:`close`. Thread-safe: calls
    from several threads run concurrently on the client's loop.
    """

    def __init__(self, manifest: Manifest, **kwargs: Any) -> None:
        self._loop = LoopThread()
        try:
            self._async = self._loop.run(_construct(manifest, kwargs))
        except BaseException:
            self._loop.stop()
            raise

    @classmethod
    def from_manifest(
        cls,
        source: ManifestSource,
        *,
        tenant: str,
        token_provider: TokenProvider,
        operator_key: OperatorPin | None = None,
        min_serial: int = 0,
        serial_state: str | os.PathLike[str] | SerialState | None = None,
        deadline: float = 5.0,
        **kwargs: Any,
    ) -> Client:
        """A client for the cluster in the signed manifest ``source`` (path or JSON dict)."""
        manifest = load_trusted_manifest(
            source, operator_key=operator_key, min_serial=min_serial, serial_state=serial_state
        )
        return cls(
            manifest, tenant=tenant, token_provider=token_provider, deadline=deadline, **kwargs
        )

    @property
    def manifest(self) -> Manifest:
        """The verified manifest this client uses."""
        return self._async.manifest

    @property
    def tenant(self) -> str:
        """The tenant every user of this client belongs to."""
        return self._async.tenant

    @property
    def async_client(self) -> AsyncClient:
        """The async client underneath (bound to this client's private loop)."""
        return self._async

    def register(
        self,
        user_id: str,
        password: Password,
        secret: bytes,
        *,
        max_guesses: int = DEFAULT_MAX_GUESSES,
    ) -> None:
        """See :meth:`pakr.AsyncClient.register`."""
        self._loop.run(self._async.register(user_id, password, secret, max_guesses=max_guesses))

    def recover(self, user_id: str, password: Password) -> bytes:
        """See :meth:`pakr.AsyncClient.recover`."""
        return self._loop.run(self._async.recover(user_id, password))

    def change_password(
        self,
        user_id: str,
        old_password: Password,
        new_password: Password,
        *,
        max_guesses: int | None = None,
    ) -> None:
        """See :meth:`pakr.AsyncClient.change_password`."""
        self._loop.run(
            self._async.change_password(
                user_id, old_password, new_password, max_guesses=max_guesses
            )
        )

    def delete(self, user_id: str) -> None:
        """See :meth:`pakr.AsyncClient.delete`."""
        self._loop.run(self._async.delete(user_id))

    def status(self, user_id: str) -> StatusReport:
        """See :meth:`pakr.AsyncClient.status`."""
        return self._loop.run(self._async.status(user_id))

    def close(self) -> None:
        """Close the node connections and stop the loop thread. Idempotent."""
        if not self._loop.running:
            return
        try:
            self._loop.run(self._async.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncClient", "Client", 1)


async def _construct(manifest: Manifest, kwargs: dict[str, Any]) -> AsyncClient:
    """Build the async client on the loop thread (its transports bind to that loop)."""
    if "loop" in kwargs:
        raise ConfigError("Client does not take a loop")
    return AsyncClient(manifest, **kwargs)
