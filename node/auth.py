"""Request authentication: the bearer token of every RPC, checked against the request.

``pakr.proto.tokens.verify_token`` checks the signature, algorithm, key id, issuer, audience
(this node's id), lifetime and times; here the node adds what needs the request: ``sub`` is
the header's user, the key's tenant is the header's tenant, the scope fits the RPC, a
``jti`` is not replayed (Register2/3 and Delete: a captured token cannot re-run a state
change) and Delete's token is fresh (``iat`` within 5 minutes). Every failure is the same
typed refusal (INVALID_AUTH) whose message never contains the token.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pakr.proto.errors import ConfigError, ErrorKind, InvalidAuth, NodeRefusal
from pakr.proto.messages import UserRef
from pakr.proto.tokens import LEEWAY_SECONDS, Claims, parse_public_key, verify_token

AUTH_METADATA_KEY = "authorization"
BEARER_PREFIX = "Bearer "
DELETE_FRESHNESS_SECONDS = 300.0
MAX_REPLAY_ENTRIES = 100_000  # ~20 MB at worst; only valid single-use tokens enter

SCOPE_USER = "user"
SCOPE_AUDIT = "audit"


def refuse(reason: str) -> NodeRefusal:
    return NodeRefusal(ErrorKind.INVALID_AUTH, f"access token rejected: {reason}")


class ReplayCache:
    """``jti`` values seen, each kept until its token expires: the fast, in-memory first check.

    The servicer also records each single-use token in the store (``Store.claim_token``), so
    the refusal survives restarts and holds across replicas sharing one database."""

    def __init__(self, max_entries: int = MAX_REPLAY_ENTRIES) -> None:
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            exp, jti = heapq.heappop(self._expiry)
            if self._seen.get(jti) == exp:
                del self._seen[jti]

    def check_and_add(self, key: str, exp: float, now: float) -> bool:
        """True if ``key`` is new (and remember it until ``exp``); False for a replay."""
        self._expire(now)
        if key in self._seen:
            return False
        if len(self._seen) >= self._max:
            raise NodeRefusal(
                ErrorKind.UNAVAILABLE, "token replay cache is full; retry later", retry_after=5.0
            )
        self._seen[key] = exp
        heapq.heappush(self._expiry, (exp, key))
        return True


def load_tenant_keys(tenants: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
    """Parse the configured ``kid → ed25519:<b64url>`` keys; ``ConfigError`` naming the kid."""
    keys: dict[str, Ed25519PublicKey] = {}
    for kid, text in tenants.items():
        try:
            keys[kid] = parse_public_key(text)
        except (ConfigError, ValueError) as exc:
            raise ConfigError(f"tenants.{kid}: {exc}") from None
    return keys


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The token of the ``authorization: Bearer <JWT>`` metadata entry."""
    values = [v for k, v in (metadata or ()) if k.lower() == AUTH_METADATA_KEY]
    if not values:
        raise refuse("missing (send 'authorization: Bearer <token>')")
    if len(values) > 1:
        raise refuse("more than one authorization header")
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise refuse("not ASCII") from None
    if not value.startswith(BEARER_PREFIX):
        raise refuse("authorization must be 'Bearer <token>'")
    return value[len(BEARER_PREFIX) :].strip()


class VerifiedTokens:
    """Tokens whose signature already verified, so a token reused for many calls (Recover1/2
    are not single-use) costs one Ed25519 verification, not one per call (~0.4 ms with
    PyJWT). Only the time checks are repeated per call. Bounded; cleared when full."""

    def __init__(self, max_entries: int = 4096) -> None:  # tokens are <= 1 KB each
        self._claims: dict[str, Claims] = {}
        self._max = max_entries

    def get(self, token: str, now: float) -> Claims | None:
        claims = self._claims.get(token)
        if claims is None:
            return None
        if now - LEEWAY_SECONDS >= claims.exp:
            del self._claims[token]
            raise refuse("expired")
        if now + LEEWAY_SECONDS < claims.nbf:
            raise refuse("not yet valid (check the clocks)")
        return claims

    def add(self, token: str, claims: Claims) -> None:
        if len(self._claims) >= self._max:
            self._claims.clear()
        self._claims[token] = claims


class Authenticator:
    """Checks tokens for one node identity."""

    def __init__(self, node_id_hex: str, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._audience = node_id_hex
        self._keys = dict(keys)
        self._replays = ReplayCache()
        self._verified = VerifiedTokens()

    def authenticate(
        self,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        user: UserRef,
        *,
        scope: str,
        now: float,
        single_use: bool = False,
        fresh_within: float | None = None,
        any_user: bool = False,
    ) -> Claims:
        """Verify the request's token for ``user`` and ``scope``.

        ``single_use``: refuse a ``jti`` seen before (until its expiry). ``fresh_within``:
        refuse a token issued longer ago than that. ``any_user``: an audit read of the whole
        tenant (empty header user) accepts any ``sub``.
        """
        token = bearer_token(metadata)
        claims = self._verified.get(token, now)
        if claims is None:
            try:
                claims = verify_token(token, keys=self._keys, audience=self._audience, now=now)
            except InvalidAuth as exc:
                raise NodeRefusal(ErrorKind.INVALID_AUTH, str(exc)) from None
            self._verified.add(token, claims)
        if claims.tenant != user.tenant:
            raise refuse("issued by another tenant")
        if not (any_user and not user.user_id) and claims.user_id != user.user_id:
            raise refuse("issued for another user")
        if claims.scope != scope:
            raise refuse(f"scope must be {scope!r} for this call")
        if fresh_within is not None and now - claims.iat > fresh_within + LEEWAY_SECONDS:
            raise refuse(f"must be issued within {int(fresh_within)} s for this call")
        if single_use and not self._replays.check_and_add(
            f"{claims.tenant}\x00{claims.jti}", claims.exp + LEEWAY_SECONDS, now
        ):
            raise refuse("already used (mint a new token for every state change)")
        return claims
