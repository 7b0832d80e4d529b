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
    auth.authenticate(md(token), USER, scope="user", now=now, single_use=True)
    with pytest.raises(NodeRefusal, match="already used"):
        auth.authenticate(md(token), USER, scope="user", now=now, single_use=True)
    old = issue_token(key, user_id=USER.user_id, audience=NODE_HEX, ttl=3600, now=now - 400)
    with pytest.raises(NodeRefusal, match="within 300"):
        auth.authenticate(md(old), USER, scope="user", now=now, fresh_within=300)


def test_replay_cache_forgets_after_expiry() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.check_and_add("a", exp=10, now=0)
    assert not cache.check_and_add("a", exp=10, now=5)
    assert cache.check_and_add("b", exp=20, now=5)
    with pytest.raises(NodeRefusal) as info:
        cache.check_and_add("c", exp=20, now=6)
    assert info.value.kind is ErrorKind.UNAVAILABLE
    assert cache.check_and_add("a", exp=30, now=11)  # "a" expired and was dropped
    assert len(cache) == 2


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
