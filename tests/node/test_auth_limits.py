"""Unit tests of the node's token checks, replay cache, rate limiter, sealing and crash points."""

from __future__ import annotations

import os
import time

import pytest

from pakr.node.auth import Authenticator, ReplayCache, bearer_token
from pakr.node.crash import CrashPoints
from pakr.node.ratelimit import RateLimiter, TokenBuckets
from pakr.node.store.base import StoreError
from pakr.node.store.sealing import Sealer
from pakr.proto.errors import ConfigError, ErrorKind, NodeRefusal
from pakr.proto.messages import UserRef
from pakr.proto.tokens import TenantKey, issue_token

USER = UserRef("acme", "alice")
NODE_HEX = "ab" * 16


def auth_with_key() -> tuple[Authenticator, TenantKey]:
    key = TenantKey.generate("acme")
    return Authenticator(NODE_HEX, {key.kid: key.public_key}), key


def md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_cached_token_still_expires() -> None:
    auth, key = auth_with_key()
    now = time.time()
    token = issue_token(key, user_id=USER.user_id, audience=NODE_HEX, ttl=60, now=now)
    auth.authenticate(md(token), USER, scope="user", now=now)
    auth.authenticate(md(token), USER, scope="user", now=now + 30)  # from the cache
    with pytest.raises(NodeRefusal) as info:
        auth.authenticate(md(token), USER, scope="user", now=now + 70)
    assert info.value.kind is ErrorKind.INVALID_AUTH and "expired" in str(info.value)


def test_cached_token_is_still_checked_against_the_request() -> None:
    auth, key = auth_with_key()
    now = time.time()
    token = issue_token(key, user_id=USER.user_id, audience=NODE_HEX, now=now)
    auth.authenticate(md(token), USER, scope="user", now=now)
    for user, scope in ((UserRef("acme", "bob"), "user"), (USER, "audit")):
        with pytest.raises(NodeRefusal):
            auth.authenticate(md(token), user, scope=scope, now=now)


def test_single_use_and_freshness() -> None:
    auth, key = auth_with_key()
    now = time.time()
    token = issue_token(key, user_id=USER.user_id, audience=NODE_HEX, now=now)
    claims = auth.authenticate(md(token), USER, scope="user", now=now, single_use=True)
    # checking does not spend it (a refused request leaves it to its retry) ...
    auth.authenticate(md(token), USER, scope="user", now=now, single_use=True)
    auth.consume(claims, now)  # ... consuming does
    with pytest.raises(NodeRefusal, match="already used"):
        auth.authenticate(md(token), USER, scope="user", now=now, single_use=True)
    with pytest.raises(NodeRefusal, match="already used"):
        auth.consume(claims, now)
    old = issue_token(key, user_id=USER.user_id, audience=NODE_HEX, ttl=3600, now=now - 400)
    with pytest.raises(NodeRefusal, match="within 300"):
        auth.authenticate(md(old), USER, scope="user", now=now, fresh_within=300)


def _token_with(key: TenantKey, **times: int) -> str:
    import jwt

    now = int(time.time())
    claims = {"iss": key.name, "sub": USER.user_id, "aud": NODE_HEX, "scope": "user"}
    claims.update({"iat": now, "nbf": now, "exp": now + 600, "jti": os.urandom(8).hex()})
    claims.update(times)
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def test_delete_freshness_checks_iat_against_now_and_nbf() -> None:
    """Issue 12 finding 6: an ``iat`` in the future, or after ``nbf``, would stretch the
    5-minute freshness window of Delete tokens."""
    auth, key = auth_with_key()
    now = int(time.time())
    future = _token_with(key, iat=now + 3600)
    with pytest.raises(NodeRefusal, match="future"):
        auth.authenticate(md(future), USER, scope="user", now=now, fresh_within=300)
    early = _token_with(key, nbf=now - 3000, iat=now)
    with pytest.raises(NodeRefusal, match="nbf"):
        auth.authenticate(md(early), USER, scope="user", now=now, fresh_within=300)
    good = _token_with(key)
    auth.authenticate(md(good), USER, scope="user", now=now, fresh_within=300)
    auth.authenticate(md(future), USER, scope="user", now=now)  # only Delete asks freshness


def test_replay_cache_forgets_after_expiry_and_never_refuses_when_full() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.check_and_add("a", exp=10, now=0)
    assert not cache.check_and_add("a", exp=10, now=5)
    assert cache.check_and_add("b", exp=20, now=5)
    assert cache.check_and_add("c", exp=20, now=6)  # full: "a" (expiring first) forgotten
    assert cache.evicted == 1 and len(cache) == 2
    assert cache.seen("b", now=6) and cache.seen("c", now=6) and not cache.seen("a", now=6)
    assert cache.check_and_add("d", exp=30, now=21)  # "b" and "c" expired and were dropped
    assert len(cache) == 1


@pytest.mark.parametrize(
    "metadata",
    [None, [], [("authorization", "Basic x")], [("authorization", "a"), ("authorization", "b")]],
)
def test_bearer_header_shapes(metadata: list[tuple[str, str]] | None) -> None:
    with pytest.raises(NodeRefusal) as info:
        bearer_token(metadata)
    assert info.value.kind is ErrorKind.INVALID_AUTH


def test_token_buckets() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", 0.0) == pytest.approx(0.5)
    assert buckets.take("k", 0.5) == 0.0  # one token refilled
    assert buckets.take("other", 0.5) == 0.0
    assert TokenBuckets(rate=0, burst=1).take("k", 0.0) == 0.0


def test_rate_limiter_refusal_carries_retry_after() -> None:
    limiter = RateLimiter(1.0, 1, 0.0, 1)
    limiter.check_user("u", 0.0)
    with pytest.raises(NodeRefusal) as info:
        limiter.check_user("u", 0.0)
    assert info.value.kind is ErrorKind.RATE_LIMITED and info.value.retry_after == 1.0


def test_sealing_binds_user_version_and_field() -> None:
    sealer = Sealer(os.urandom(32))
    version = os.urandom(16)
    key = sealer.new_version_key(USER, version, 1000.0)
    sealed = key.seal("oprf_key_share", b"k" * 32)
    assert key.generation is not None and key.wrapped is not None
    opened = sealer.open_version_key(USER, version, key.generation, key.wrapped)
    assert opened.unseal("oprf_key_share", sealed) == b"k" * 32
    assert b"k" * 32 not in sealed
    with pytest.raises(StoreError):
        opened.unseal("secret_share", sealed)  # another field
    for user, ver in ((UserRef("acme", "bob"), version), (USER, os.urandom(16))):
        with pytest.raises(StoreError):  # the wrapped key is bound to its row
            sealer.open_version_key(user, ver, key.generation, key.wrapped)
    with pytest.raises(StoreError, match="key generation"):  # another node's generations
        Sealer(os.urandom(32)).open_version_key(USER, version, key.generation + 1, key.wrapped)
    assert repr(sealer).startswith("Sealer(<data key>")


def test_crash_point_parsing() -> None:
    assert CrashPoints.from_env({}).at is None
    armed = CrashPoints.from_env(
        {"PAKR_CRASH_AT": "recover2.after_commit", "PAKR_CRASH_AFTER": "3"}
    )
    assert armed.at == "recover2.after_commit" and armed.after == 3
    armed.hit("recover3", "after_commit")  # another point: nothing happens
    armed.hit("recover2", "after_commit")
    assert armed.hits == 1
    for env in ({"PAKR_CRASH_AT": "recover9.after_commit"}, {"PAKR_CRASH_AFTER": "x"}):
        with pytest.raises(ConfigError):
            CrashPoints.from_env(env)


def test_refusal_log_bounds_lines_per_peer_and_peers() -> None:
    from pakr.node.refusal_log import RefusalLog

    log = RefusalLog(interval=10.0, max_peers=2)
    assert log.admit("a", 0.0) == 0
    assert log.admit("a", 1.0) is None and log.admit("a", 2.0) is None
    assert log.admit("a", 10.5) == 2  # the next line says how many were held back
    assert log.admit("b", 11.0) == 0
    assert log.admit("c", 11.0) is None  # table full, nothing old enough: held back
    assert log.admit("c", 21.0) == 0  # "a" and "b" aged out
    assert log.suppressed == 3
