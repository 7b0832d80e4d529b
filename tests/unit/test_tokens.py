"""Access tokens: every claim rule of docs/protocol.md §2 refuses with InvalidAuth."""

from __future__ import annotations

import base64
import json
import os
import stat

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from pakr.proto.errors import ConfigError, InvalidAuth
from pakr.proto.tokens import (
    MAX_LIFETIME_SECONDS,
    TenantKey,
    issue_token,
    parse_public_key,
    public_key_text,
    verify_token,
)

NODE = "00112233445566778899aabbccddeeff"
OTHER_NODE = "ffeeddccbbaa99887766554433221100"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def key() -> TenantKey:
    return TenantKey.generate("acme")


def verify(token: str, key: TenantKey, now: float = NOW, audience: str = NODE):  # type: ignore[no-untyped-def]
    return verify_token(token, keys={key.kid: key.public_key}, audience=audience, now=now)


def test_round_trip(key: TenantKey) -> None:
    token = issue_token(key, user_id="alice", audience=NODE, now=NOW)
    claims = verify(token, key)
    assert (claims.tenant, claims.user_id, claims.audience, claims.scope) == (
        "acme",
        "alice",
        NODE,
        "user",
    )
    assert claims.exp - claims.nbf == 300
    assert len(token) <= 1000


def test_wrong_audience_refused(key: TenantKey) -> None:
    token = issue_token(key, user_id="alice", audience=OTHER_NODE, now=NOW)
    with pytest.raises(InvalidAuth, match="another node"):
        verify(token, key)


def test_audience_list_refused(key: TenantKey) -> None:
    token = jwt.encode(
        {
            "iss": "acme",
            "sub": "alice",
            "aud": [NODE, OTHER_NODE],
            "scope": "user",
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 60,
            "jti": "x",
        },
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    with pytest.raises(InvalidAuth, match="exactly one node"):
        verify(token, key)


def test_expired_and_not_yet_valid(key: TenantKey) -> None:
    token = issue_token(key, user_id="alice", audience=NODE, now=NOW, ttl=60)
    verify(token, key, now=NOW + 64)  # inside the 5 s leeway
    with pytest.raises(InvalidAuth, match="expired"):
        verify(token, key, now=NOW + 65)
    with pytest.raises(InvalidAuth, match="not yet valid"):
        verify(token, key, now=NOW - 6)


def test_unknown_kid_and_wrong_key(key: TenantKey) -> None:
    other = TenantKey.generate("acme", number=2)
    token = issue_token(other, user_id="alice", audience=NODE, now=NOW)
    with pytest.raises(InvalidAuth, match="unknown signing key"):
        verify(token, key)
    forged = TenantKey(name="acme", number=1, private_key=Ed25519PrivateKey.generate())
    token = issue_token(forged, user_id="alice", audience=NODE, now=NOW)
    with pytest.raises(InvalidAuth, match="bad signature"):
        verify(token, key)


def test_issuer_must_match_kid(key: TenantKey) -> None:
    token = jwt.encode(
        {
            "iss": "evil",
            "sub": "alice",
            "aud": NODE,
            "scope": "user",
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 60,
            "jti": "x",
        },
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    with pytest.raises(InvalidAuth, match="issuer"):
        verify(token, key)


def test_algorithm_pinned(key: TenantKey) -> None:
    token = jwt.encode(
        {"iss": "acme", "sub": "a", "aud": NODE, "exp": NOW + 5},
        "secret-secret-secret-secret-secret!",
        algorithm="HS256",
        headers={"kid": key.kid},
    )
    with pytest.raises(InvalidAuth, match="EdDSA"):
        verify(token, key)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": key.kid}).encode())
    body = base64.urlsafe_b64encode(json.dumps({"sub": "a"}).encode())
    with pytest.raises(InvalidAuth):
        verify(header.decode().rstrip("=") + "." + body.decode().rstrip("=") + ".", key)


def test_lifetime_cap(key: TenantKey) -> None:
    token = jwt.encode(
        {
            "iss": "acme",
            "sub": "alice",
            "aud": NODE,
            "scope": "user",
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + MAX_LIFETIME_SECONDS + 1,
            "jti": "x",
        },
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    with pytest.raises(InvalidAuth, match="24 hours"):
        verify(token, key)
    with pytest.raises(ConfigError):
        issue_token(key, user_id="alice", audience=NODE, ttl=MAX_LIFETIME_SECONDS + 1)


def test_missing_claims_and_bad_scope(key: TenantKey) -> None:
    token = jwt.encode(
        {"iss": "acme", "sub": "alice", "aud": NODE, "exp": NOW + 60},
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )
    with pytest.raises(InvalidAuth, match="missing claim"):
        verify(token, key)
    with pytest.raises(ConfigError):
        issue_token(key, user_id="alice", audience=NODE, scope="admin")


def test_oversized_token_refused(key: TenantKey) -> None:
    with pytest.raises(InvalidAuth, match="1,000"):
        verify("a" * 1001, key)
    with pytest.raises(InvalidAuth, match="missing"):
        verify("", key)


@given(st.text(max_size=300))
def test_random_text_is_refused_cleanly(text: str) -> None:
    key = TenantKey(
        name="acme", number=1, private_key=Ed25519PrivateKey.from_private_bytes(bytes(32))
    )
    with pytest.raises(InvalidAuth):
        verify(text, key)


def test_key_file_round_trip(tmp_path, key: TenantKey) -> None:  # type: ignore[no-untyped-def]
    path = key.save(tmp_path / "acme.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = TenantKey.load(path)
    assert loaded.kid == key.kid and loaded.public_key_text == key.public_key_text
    assert repr(loaded) == "TenantKey(name='acme', number=1)"
    with pytest.raises(ConfigError, match="already exists"):
        key.save(path)


def test_key_file_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.key"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        TenantKey.load(bad)
    doc = TenantKey.generate("acme").to_document()
    doc["public_key"] = TenantKey.generate("acme").public_key_text
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="inconsistent"):
        TenantKey.load(bad)
    with pytest.raises(ConfigError):
        TenantKey.load(tmp_path / "missing.key")
    with pytest.raises(ConfigError):
        TenantKey.generate("a:b")


def test_public_key_text(key: TenantKey) -> None:
    assert public_key_text(parse_public_key(key.public_key_text)) == key.public_key_text
    for bad in ("", "ed25519:", "rsa:AAAA", "ed25519:!!!!", "ed25519:" + "A" * 40):
        with pytest.raises(ConfigError):
            parse_public_key(bad)
