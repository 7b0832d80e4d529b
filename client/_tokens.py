"""Access-token providers: where the SDK gets one token per node per call.

A provider is any callable ``(user_id, audience) -> str``, sync or async, where ``audience`` is
the node id in lowercase hex (docs/protocol.md §2: one token per node, so a node cannot replay a
client's token to its peers). In production it asks the application's backend, which mints
tokens after its own login; :func:`dev_token_provider` mints them locally from a tenant key
file, for development and tests only.

The SDK asks for a fresh token for every RPC: nodes keep a ``jti`` replay cache for
Register2/3 and Delete, so a retried request needs a new token. A synchronous provider runs on
the SDK's event loop and must be quick; a provider that does I/O should be ``async``.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

from pakr.proto.errors import ConfigError, InvalidAuth
from pakr.proto.tokens import DEFAULT_TTL_SECONDS, TenantKey, issue_token

TokenProvider = Callable[[str, str], "str | Awaitable[str]"]
"""``(user_id, audience_node_id_hex) -> token``, sync or async."""


async def fetch_token(provider: TokenProvider, user_id: str, audience: str) -> str:
    """Call ``provider`` (sync or async) and check it returned a non-empty token string."""
    result = provider(user_id, audience)
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, str) or not result:
        raise InvalidAuth(
            "the token provider returned no token; it must return the JWT as a non-empty str"
        )
    return result


class DevTokenProvider:
    """Mint tokens locally with a tenant's private key (development only).

    Production applications must not ship tenant keys to clients: their backend mints tokens
    after authenticating the user and the client fetches them. ``scope`` is ``"user"`` (the
    user's own operations) or ``"audit"`` (reading the audit log, :meth:`pakr.Client.audit`).
    """

    def __init__(
        self, key: TenantKey, *, ttl: int = DEFAULT_TTL_SECONDS, scope: str = "user"
    ) -> None:
        self._key = key
        self._ttl = ttl
        self._scope = scope

    def with_scope(self, scope: str) -> DevTokenProvider:
        """The same key minting tokens of another scope."""
        return DevTokenProvider(self._key, ttl=self._ttl, scope=scope)

    @property
    def tenant(self) -> str:
        """The tenant whose key mints the tokens."""
        return self._key.tenant

    def __repr__(self) -> str:
        return f"DevTokenProvider(kid={self._key.kid!r})"

    def __call__(self, user_id: str, audience: str) -> str:
        return issue_token(
            self._key, user_id=user_id, audience=audience, ttl=self._ttl, scope=self._scope
        )


def dev_token_provider(
    tenant_key_path: str | os.PathLike[str], *, ttl: int = DEFAULT_TTL_SECONDS
) -> DevTokenProvider:
    """A provider minting tokens from the tenant key file at ``tenant_key_path``.

    For development, demos and tests (``pakr tenant`` / ``pakr cluster up`` write the key).
    """
    path = Path(tenant_key_path)
    if not path.exists():
        raise ConfigError(f"tenant key file {path} does not exist")
    return DevTokenProvider(TenantKey.load(path), ttl=ttl)


REUSE_MARGIN_SECONDS = 30.0
"""A cached token is not reused within this many seconds of its expiry."""


def token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verification (only to schedule reuse)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


class TokenCache:
    """Reusable tokens by ``(user_id, audience)``, bounded and expiring (never logged)."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._max = max_entries

    def __repr__(self) -> str:
        return f"TokenCache({len(self._entries)} entries)"

    def get(self, user_id: str, audience: str) -> str | None:
        """A cached token still valid for a while, or ``None``."""
        key = (user_id, audience)
        entry = self._entries.get(key)
        if entry is None:
            return None
        token, reuse_until = entry
        if time.time() >= reuse_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return token

    def put(self, user_id: str, audience: str, token: str) -> None:
        """Remember ``token`` if its expiry is known and not imminent."""
        exp = token_expiry(token)
        if exp is None or exp - REUSE_MARGIN_SECONDS <= time.time():
            return
        self._entries[(user_id, audience)] = (token, exp - REUSE_MARGIN_SECONDS)
        self._entries.move_to_end((user_id, audience))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def forget(self, user_id: str, audience: str) -> None:
        """Drop a token a node rejected."""
        self._entries.pop((user_id, audience), None)
