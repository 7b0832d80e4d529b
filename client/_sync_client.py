"""``pakr.Client``: the blocking face of :class:`pakr.AsyncClient`.

Every method runs the async implementation on a private event-loop thread
(:mod:`pakr._sync`) and blocks until it finishes, so both faces behave identically.
"""

from __future__ import annotations

from types import TracebackType

from pakr._async_client import AsyncClient
from pakr._audit import AuditPage
from pakr._cluster import PhaseObserver
from pakr._fanout import RetryPolicy
from pakr._from_manifest import FromManifest
from pakr._operations.register import IfExists, Registration
from pakr._operations.status import StatusReport
from pakr._passwords import Password
from pakr._sync import LoopThread
from pakr._tokens import TokenProvider
from pakr._transport import TransportFactory, grpc_transport
from pakr.proto.manifest import Manifest
from pakr.proto.messages import DEFAULT_MAX_GUESSES
from pakr.proto.randomness import SYSTEM, Randomness


class Client(FromManifest):
    """Register, recover, change and delete a user's secret on a pakr cluster (blocking).

    Same arguments and behaviour as :class:`pakr.AsyncClient`; use as a context manager
    (``with Client.from_manifest(...) as client:``) or call :meth:`close`. Thread-safe: calls
    from several threads run concurrently on the client's loop.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        tenant: str,
        token_provider: TokenProvider,
        deadline: float = 5.0,
        retry: RetryPolicy | None = None,
        transport_factory: TransportFactory = grpc_transport,
        rng: Randomness = SYSTEM,
        on_phase: PhaseObserver | None = None,
    ) -> None:
        self._loop = LoopThread()

        async def construct() -> AsyncClient:  # on the loop thread: transports bind to it
            return AsyncClient(
                manifest,
                tenant=tenant,
                token_provider=token_provider,
                deadline=deadline,
                retry=retry,
                transport_factory=transport_factory,
                rng=rng,
                on_phase=on_phase,
            )

        try:
            self._async = self._loop.run(construct())
        except BaseException:
            self._loop.stop()
            raise

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
        if_exists: IfExists = "refuse",
    ) -> Registration:
        """See :meth:`pakr.AsyncClient.register`."""
        return self._loop.run(
            self._async.register(
                user_id, password, secret, max_guesses=max_guesses, if_exists=if_exists
            )
        )

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

    def audit(
        self,
        user_id: str | None = None,
        *,
        cursor: str | None = None,
        limit: int = 100,
        token_provider: TokenProvider | None = None,
    ) -> AuditPage:
        """See :meth:`pakr.AsyncClient.audit`."""
        return self._loop.run(
            self._async.audit(user_id, cursor=cursor, limit=limit, token_provider=token_provider)
        )

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
