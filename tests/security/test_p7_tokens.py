"""Property 7 (docs/protocol.md §8): without a valid token for that user and that node, nobody can
register, spend guesses, delete, or read the audit log.

The per-RPC matrix (every RPC x missing, garbage, expired, other user, other tenant, other
node, wrong scope, with a control showing the same request *does* change state with a good
token, plus single-use and fresh-Delete rules) is in ``tests/node/test_servicer.py`` against
an in-process node. This module adds what that one does not show: forged tokens (the
tenant's kid with an attacker's key, ``alg: none``, HMAC keyed with the public key, a
payload edited under the original signature) and the whole SDK against a live cluster of
node processes — a client whose tokens are wrong in any of these ways changes nothing on
any node and spends no guess.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

import pakr
from pakr.coordinator.localcluster import LocalCluster
from pakr.node.config import RateLimits
from pakr.proto import wire
from pakr.proto.errors import ErrorKind
from pakr.proto.messages import PROTOCOL_VERSION
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc as pb_grpc
from tests.security.sec_live import client_for, db_dump, guess_counts

# Per-user limits the controls never hit: this module tests tokens, not rate limits.
LIMITS = RateLimits(user_rate=1000.0, user_burst=1000)
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.cluster(nodes=3, threshold=2, rate_limits=LIMITS),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _edit(token: str, **claims: Any) -> str:
    head, payload, sig = token.split(".")
    body = json.loads(_unb64(payload))
    body.update(claims)
    return ".".join([head, _b64(json.dumps(body).encode()), sig])


def _alg_none(token: str) -> str:
    head, payload, _ = token.split(".")
    header = json.loads(_unb64(head))
    header["alg"] = "none"
    return ".".join([_b64(json.dumps(header).encode()), payload, ""])


def _hmac_with_public_key(key: TenantKey, token: str) -> str:
    import hashlib
    import hmac

    head, payload, _ = token.split(".")
    header = json.loads(_unb64(head))
    header["alg"] = "HS256"
    signing_input = _b64(json.dumps(header).encode()) + "." + payload
    secret = key.public_key_text.encode()
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


Provider = Callable[[str, str], str]


def bad_providers(cluster: LocalCluster) -> dict[str, Provider]:
    key = TenantKey.load(cluster.tenant_key_path)
    impostor = TenantKey.generate(key.tenant, key.number)  # same kid, attacker's private key
    stranger = TenantKey.generate("evil")
    ids = [n.node_id.hex() for n in cluster.manifest().nodes]

    def good(user: str, aud: str, **kw: Any) -> str:
        return issue_token(key, user_id=user, audience=aud, **kw)

    return {
        "other user": lambda user, aud: good("mallory", aud),
        "other node": lambda user, aud: good(user, ids[(ids.index(aud) + 1) % len(ids)]),
        "expired": lambda user, aud: good(user, aud, now=time.time() - 3600),
        "audit scope": lambda user, aud: good(user, aud, scope="audit"),
        "forged with the tenant's kid": lambda user, aud: issue_token(
            impostor, user_id=user, audience=aud
        ),
        "unknown tenant": lambda user, aud: issue_token(stranger, user_id=user, audience=aud),
        "alg none": lambda user, aud: _alg_none(good(user, aud)),
        "HS256 keyed with the public key": lambda user, aud: _hmac_with_public_key(
            key, good(user, aud)
        ),
        "payload edited": lambda user, aud: _edit(good("mallory", aud), sub=user),
        "lifetime stretched": lambda user, aud: _edit(good(user, aud), exp=int(time.time()) + 9e6),
    }


@pytest.fixture(scope="module", autouse=True)
def victim(cluster: LocalCluster) -> None:
    with client_for(cluster) as c:
        c.register("victim", "right", b"victim's secret")


PROVIDER_NAMES = [
    "other user",
    "other node",
    "expired",
    "audit scope",
    "forged with the tenant's kid",
    "unknown tenant",
    "alg none",
    "HS256 keyed with the public key",
    "payload edited",
    "lifetime stretched",
]


@pytest.mark.parametrize("bad", PROVIDER_NAMES)
def test_sdk_with_bad_tokens_changes_nothing_anywhere(cluster: LocalCluster, bad: str) -> None:
    provider = bad_providers(cluster)[bad]
    victim = f"victim-{PROVIDER_NAMES.index(bad)}"
    with client_for(cluster) as c:
        c.register(victim, "right", b"victim's secret")
    before = db_dump(cluster)
    counts = guess_counts(cluster, victim)
    with client_for(cluster, token_provider=provider) as c:
        with pytest.raises(pakr.InvalidAuth):
            c.register(f"newcomer-{bad}", "pw", b"s")
        with pytest.raises(pakr.InvalidAuth):
            c.recover(victim, "a guess")
        with pytest.raises(pakr.InvalidAuth):
            c.recover(victim, "right")
        with pytest.raises(pakr.InvalidAuth):
            c.delete(victim)
    assert db_dump(cluster) == before, f"{bad}: a node's data changed"
    assert guess_counts(cluster, victim) == counts == {1: 0, 2: 0, 3: 0}
    with client_for(cluster) as c:  # the control: a good token still works, nothing was spent
        assert c.recover(victim, "right") == b"victim's secret"


def test_audit_log_needs_an_audit_token_for_that_node(cluster: LocalCluster) -> None:
    key = TenantKey.load(cluster.tenant_key_path)
    node = cluster.node(1)
    other = cluster.node(2)
    cert = node.tls_cert.read_bytes()
    channel = grpc.secure_channel(node.address, grpc.ssl_channel_credentials(cert))
    try:
        stub = pb_grpc.NodeStub(channel)
        request = pb.ReadAuditRequest(
            header=pb.RequestHeader(
                protocol_version=PROTOCOL_VERSION,
                request_id=os.urandom(16),
                tenant=cluster.tenant,
                user_id="",
            ),
            after_id=0,
            limit=100,
        )
        refused = {
            "no token": None,
            "user scope": issue_token(key, user_id="victim", audience=node.node_id),
            "audit token for another node": issue_token(
                key, user_id="victim", audience=other.node_id, scope="audit"
            ),
            "audit token of another tenant": issue_token(
                TenantKey.generate("evil"), user_id="victim", audience=node.node_id, scope="audit"
            ),
        }
        for name, token in refused.items():
            metadata = () if token is None else (("authorization", f"Bearer {token}"),)
            with pytest.raises(grpc.RpcError) as info:
                stub.ReadAudit(request, metadata=metadata, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
            trailers = dict(info.value.trailing_metadata() or ())
            detail = wire.error_detail_from_bytes(trailers[wire.ERROR_METADATA_KEY])
            assert detail.kind is ErrorKind.INVALID_AUTH, name
        good = issue_token(key, user_id="victim", audience=node.node_id, scope="audit")
        reply = stub.ReadAudit(request, metadata=(("authorization", f"Bearer {good}"),), timeout=5)
        assert reply.entries  # the control: the audit token reads the tenant's log
        assert {e.tenant for e in reply.entries} == {cluster.tenant}
    finally:
        channel.close()
