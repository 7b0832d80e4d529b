"""Request authentication: the bearer token of every RPC, checked against the request.

``pakr.proto.tokens.verify_token`` checks the signature, algorithm, key id, issuer, audience
(this node's id), lifetime and times; ``pakr.proto.tokens.check_claims`` what needs the
request: ``sub`` is the header's user, the key's tenant is the header's tenant, the scope fits
the RPC, Delete's token is fresh (``iat`` within 5 minutes, not in the future, and not after
``nbf``); here the node adds its memory: a ``jti`` is not replayed (Register2/3 and Delete: a
captured token cannot re-run a state change). Every failure is
the same typed refusal (INVALID_AUTH) whose message never contains the token.

A single-use token is only *checked* here; it is *consumed* (:meth:`Authenticator.consume`)
by the servicer once the request passed the rate limits and decoded, so a request refused for
bad input or a rate limit does not burn the token its good retry needs (issue 12, finding 5).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pakr.proto.errors import ConfigError, ErrorKind, InvalidAuth, NodeRefusal
from pakr.proto.messages import UserRef
from pakr.proto.tokens import (
    LEEWAY_SECONDS,
    Claims,
    check_claims,
    parse_public_key,
    verify_token,
)

AUTH_METADATA_KEY = "authorization"
BEARER_PREFIX = "Bearer "
MAX_REPLAY_ENTRIES = 100_000  # ~20 MB at worst; only valid single-use tokens enter


def refuse(reason: str) -> NodeRefusal:
    return NodeRefusal(ErrorKind.INVALID_AUTH, f"access token rejected: {reason}")


class ReplayCache:
    """``jti`` values seen, each kept until its token expires: the fast, in-memory first check.

    The servicer also records each single-use token in the store (``Store.claim_token``), the
    authority: the refusal survives restarts and holds across replicas sharing one database.
    So when this cache is full it forgets the entry that expires first instead of refusing
    anyone: a flood of valid tokens from one tenant can slow nobody else's state changes down
    to a refusal (issue 12, finding 5); a replay of a forgotten token is still refused by the
    store."""

    def __init__(self, max_entries: int | None = None) -> None:
        self._seen: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []
        self._max = MAX_REPLAY_ENTRIES if max_entries is None else max_entries
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            exp, jti = heapq.heappop(self._expiry)
            if self._seen.get(jti) == exp:
                del self._seen[jti]

    def seen(self, key: str, now: float) -> bool:
        """Whether ``key`` was consumed before (and has not expired): a peek, no change."""
        self._expire(now)
        return key in self._seen

    def check_and_add(self, key: str, exp: float, now: float) -> bool:
        """True if ``key`` is new (and remember it until ``exp``); False for a replay.

        Never refuses for space: when full, the entry expiring first is forgotten."""
        self._expire(now)
        if key in self._seen:
            return False
        while len(self._seen) >= self._max and self._expiry:
            _, old = heapq.heappop(self._expiry)
            if self._seen.pop(old, None) is not None:
                self.evicted += 1
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
        try:
            check_claims(
                claims, user, scope=scope, now=now, fresh_within=fresh_within, any_user=any_user
            )
        except InvalidAuth as exc:
            raise NodeRefusal(ErrorKind.INVALID_AUTH, str(exc)) from None
        if single_use and self._replays.seen(_replay_key(claims), now):
            raise refuse(_USED)
        return claims

    def consume(self, claims: Claims, now: float) -> None:
        """Spend a single-use token in memory (the servicer then records it in the store);
        call only once the request passed the rate limits and decoded."""
        if not self._replays.check_and_add(_replay_key(claims), claims.exp + LEEWAY_SECONDS, now):
            raise refuse(_USED)


_USED = "already used (mint a new token for every state change)"


def _replay_key(claims: Claims) -> str:
    return f"{claims.tenant}\x00{claims.jti}"
