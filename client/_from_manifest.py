"""``from_manifest``, written once for both faces (:class:`pakr.Client`, :class:`pakr.AsyncClient`).

Both faces take the same constructor arguments; this mixin verifies the signed manifest
(:func:`pakr._trust.load_trusted_manifest`) and passes it on with them, so the two
``from_manifest`` signatures cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Self

from pakr._cluster import PhaseObserver
from pakr._fanout import RetryPolicy
from pakr._tokens import TokenProvider
from pakr._transport import TransportFactory, grpc_transport
from pakr._trust import SerialState, load_trusted_manifest
from pakr.proto.manifest import OperatorPin
from pakr.proto.randomness import SYSTEM, Randomness

ManifestSource = str | os.PathLike[str] | Mapping[str, Any]
"""A manifest file's path, or its JSON document already parsed."""


class FromManifest:
    """The ``from_manifest`` constructor shared by both client faces."""

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
        retry: RetryPolicy | None = None,
        transport_factory: TransportFactory = grpc_transport,
        rng: Randomness = SYSTEM,
        on_phase: PhaseObserver | None = None,
    ) -> Self:
        """A client for the cluster in the signed manifest ``source`` (path or JSON dict).

        ``operator_key`` (``ed25519:...``, required) pins the operator who must have signed
        it; ``pakr.INSECURE_UNPINNED`` opts out (dev clusters only; warns). ``min_serial``
        and ``serial_state`` (a small JSON file holding the highest serial seen per operator
        key, updated here) refuse rollbacks to an older manifest than one already seen. The
        other arguments are the constructor's.
        """
        manifest = load_trusted_manifest(
            source, operator_key=operator_key, min_serial=min_serial, serial_state=serial_state
        )
        construct: Callable[..., Self] = cls  # both faces take these keyword arguments
        return construct(
            manifest,
            tenant=tenant,
            token_provider=token_provider,
            deadline=deadline,
            retry=retry,
            transport_factory=transport_factory,
            rng=rng,
            on_phase=on_phase,
        )
