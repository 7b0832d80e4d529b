"""Fuzzing every RPC of a live node process with malformed protobufs and random bytes.

A one-node dev cluster (a real ``pakr node serve`` process over TLS, rate limits off so the
fuzz reaches the validation code instead of the limiter) holds one registered user. Requests
go through a *generic* channel (``unary_unary`` with no serializer), so arbitrary bytes reach
the server: random bytes, random field values in the request's own message type, and
bit-flipped / truncated / extended encodings of those. Half of the structured requests carry
a valid token for the header's user and the node, so they get past authentication into field
validation. After each RPC's run: the process is alive, health says SERVING, the node log
has no unhandled exception, and the database dump is byte-for-byte unchanged.

Bounded by ``PAKR_FUZZ_EXAMPLES`` per RPC (default 200; ``make fuzz`` uses 10000).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pakr
from pakr.coordinator.health import probe
from pakr.coordinator.localcluster import LocalCluster
from pakr.node.config import RateLimits
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2 as pb
from tests.conftest import ClusterFactory

EXAMPLES = int(os.environ.get("PAKR_FUZZ_EXAMPLES", "200"))
SERVICE = "/pakr.v1.Node/"
REQUESTS: dict[str, type[Any]] = {
    "Register1": pb.Register1Request,
    "Register2": pb.Register2Request,
    "Register3": pb.Register3Request,
    "Recover1": pb.Recover1Request,
    "Recover2": pb.Recover2Request,
    "Recover3": pb.Recover3Request,
    "Delete": pb.DeleteRequest,
    "ReadAudit": pb.ReadAuditRequest,
}
USERS = ("victim", "fuzz", "", "x" * 129, "\udcff"[:0] + "ü")
# Codes a node may answer garbage with; never INTERNAL or UNKNOWN.
TYPED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

pytestmark = pytest.mark.timeout(600 + EXAMPLES * 2)

TALLY: dict[str, int] = {}
UNPARSEABLE: dict[str, int] = {}
CODES: dict[str, int] = {}


class FuzzNode:
    """The live node, a raw channel to it, and what the checks need."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.node = cluster.node(1)
        self.node_id = self.node.node_id
        self.key = TenantKey.load(cluster.tenant_key_path)
        self.cert = self.node.tls_cert.read_bytes()
        credentials = grpc.ssl_channel_credentials(root_certificates=self.cert)
        self.channel = grpc.secure_channel(
            self.node.address,
            credentials,
            options=[("grpc.max_send_message_length", 1 << 20)],
        )
        self.db = self.node.dir / "node.db"

    def call(self, method: str, body: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
        rpc = self.channel.unary_unary(
            SERVICE + method, request_serializer=None, response_deserializer=None
        )
        TALLY[method] = TALLY.get(method, 0) + 1
        try:
            rpc(body, timeout=10, metadata=metadata)
            CODES["OK"] = CODES.get("OK", 0) + 1
        except grpc.RpcError as exc:
            code = exc.code()
            CODES[code.name] = CODES.get(code.name, 0) + 1
            # Every request gets a typed status, including bodies that do not parse as the
            # request type (the node registers tolerant parsers: INVALID_ARGUMENT + detail).
            assert code in TYPED, f"{method}: {code} {exc.details()}"
            if not _parses(REQUESTS[method], body):
                UNPARSEABLE[method] = UNPARSEABLE.get(method, 0) + 1
                assert code in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,  # oversized bodies, refused by size
                ), f"{method}: unparseable body answered {code}"
                trailers = dict(exc.trailing_metadata() or ())
                if code is grpc.StatusCode.INVALID_ARGUMENT:
                    assert "pakr-error-bin" in trailers, f"{method}: no typed error detail"

    def token(self, user: str, scope: str = "user") -> str:
        return issue_token(self.key, user_id=user, audience=self.node_id, scope=scope)

    def dump(self) -> list[str]:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            # The audit log and the used single-use token ids are bookkeeping of authenticated
            # requests, not user data (a refused Register3 still spends its token).
            return [
                line
                for line in conn.iterdump()
                if not line.startswith(('INSERT INTO "audit"', 'INSERT INTO "token_uses"'))
            ]
        finally:
            conn.close()

    def log_text(self) -> str:
        return self.node.log.read_text(errors="replace")


def _parses(message_type: type[Any], body: bytes) -> bool:
    try:
        message_type.FromString(body)
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def fuzz_node(module_local_cluster: ClusterFactory) -> Iterator[FuzzNode]:
    # Rate limits off: the fuzzer sends far more than a user or a peer may.
    off = RateLimits(user_rate=0.0, peer_rate=0.0)
    cluster = module_local_cluster(nodes=1, threshold=1, rate_limits=off)
    with pakr.Client.from_manifest(
        cluster.manifest_path,
        tenant=cluster.tenant,
        token_provider=pakr.dev_token_provider(cluster.tenant_key_path),
        operator_key=cluster.operator_public_key(),
    ) as client:
        client.register("victim", "pw", b"victim's secret")
    node = FuzzNode(cluster)
    try:
        yield node
    finally:
        node.channel.close()


# ---------------------------------------------------------------------- strategies


def _bytes_field() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        st.sampled_from([16, 32, 64, 145]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        st.sampled_from([bytes(32), b"\xff" * 32, b"\x01" + bytes(31), b"\xed" + b"\xff" * 31]),
    )


def _scalar_for(field: Any) -> st.SearchStrategy[Any]:
    fd = field.type
    desc = field
    if fd == desc.TYPE_BYTES:
        return _bytes_field()
    if fd == desc.TYPE_STRING:
        return st.one_of(st.sampled_from(USERS), st.text(max_size=200))
    if fd in (desc.TYPE_UINT32,):
        return st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2, 100, 101]))
    if fd in (desc.TYPE_UINT64,):
        return st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))
    if fd in (desc.TYPE_INT64,):
        return st.integers(-(2**63), 2**63 - 1)
    if fd == desc.TYPE_BOOL:
        return st.booleans()
    if fd == desc.TYPE_DOUBLE:
        return st.floats(allow_nan=True)
    if fd == desc.TYPE_ENUM:
        return st.integers(0, 20)
    raise AssertionError(f"unhandled field type {fd}")


def _message(message_type: type[Any], depth: int = 0) -> st.SearchStrategy[Any]:
    descriptor = message_type.DESCRIPTOR
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None:
            sub = getattr(pb, field.message_type.name)
            if field.name == "header":
                parts[field.name] = st.one_of(_header(), _header(), _header(), _message(sub))
            elif field.is_repeated or depth > 2:
                continue
            else:
                parts[field.name] = st.one_of(st.none(), _message(sub, depth + 1))
        elif not field.is_repeated:
            parts[field.name] = st.one_of(st.none(), _scalar_for(field))

    def build(values: dict[str, Any]) -> Any:
        msg = message_type()
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, type(msg)) or hasattr(value, "DESCRIPTOR"):
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries(parts).map(build)


def _header() -> st.SearchStrategy[Any]:
    return st.builds(
        lambda version, user, rid: pb.RequestHeader(
            protocol_version=version, request_id=rid, tenant="dev", user_id=user
        ),
        st.sampled_from([1] * 9 + [0, 2]),
        st.sampled_from(USERS[:2] * 4 + USERS),
        st.one_of(*[st.binary(min_size=16, max_size=16)] * 5, st.binary(max_size=20)),
    )


def _mutate(data: bytes, draw: Any) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "as_is"]))
    if kind == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if kind == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if kind == "extend":
        return data + draw(st.binary(min_size=1, max_size=64))
    return data


@st.composite
def _request(draw: Any, method: str) -> tuple[bytes, str, str]:
    """(body, auth mode, user the valid token is for)."""
    shape = draw(st.sampled_from(["raw"] * 2 + ["structured"] * 5 + ["mutated"] * 2 + ["huge"]))
    if shape == "raw":
        body = draw(st.binary(max_size=512))
        msg = None
    elif shape == "huge":
        body = bytes([0x12]) + (70 * 1024).to_bytes(3, "little") + os.urandom(70 * 1024)
        msg = None
    else:
        msg = draw(_message(REQUESTS[method]))
        body = msg.SerializeToString()
        if shape == "mutated":
            body = _mutate(body, draw)
    user = msg.header.user_id if msg is not None and msg.HasField("header") else "victim"
    auth = draw(st.sampled_from(["none", "garbage", "valid", "valid", "audit", "other-node"]))
    if method == "Delete" and auth == "valid":
        auth = "other-node"  # a valid Delete legitimately changes the DB: not a fuzz input
    return body, auth, user


def _metadata(node: FuzzNode, auth: str, user: str) -> tuple[tuple[str, str], ...]:
    if auth == "none":
        return ()
    if auth == "garbage":
        return (("authorization", "Bearer " + os.urandom(30).hex()),)
    safe_user = user if 1 <= len(user.encode("utf-8", "replace")) <= 128 else "fuzz"
    if auth == "other-node":
        token = issue_token(node.key, user_id=safe_user, audience="00" * 16)
    else:
        token = node.token(safe_user, scope="audit" if auth == "audit" else "user")
    return (("authorization", "Bearer " + token),)


@pytest.mark.parametrize("method", list(REQUESTS))
def test_fuzz_rpc_never_crashes_or_changes_state(fuzz_node: FuzzNode, method: str) -> None:
    before = fuzz_node.dump()
    log_before = len(fuzz_node.log_text())

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=os.environ.get("PAKR_FUZZ_SEED") is None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(_request(method))
    def run(request: tuple[bytes, str, str]) -> None:
        body, auth, user = request
        fuzz_node.call(method, body, _metadata(fuzz_node, auth, user))

    run()
    pid = fuzz_node.cluster.node_pid(1)
    assert pid is not None, "the node process died"
    assert probe(fuzz_node.node.address, fuzz_node.cert, timeout=5.0).serving
    new_log = fuzz_node.log_text()[log_before:]
    for marker in ("Traceback", "unexpected error", "Exception"):
        assert marker not in new_log, f"{method}: node log shows {marker!r}:\n{new_log[-3000:]}"
    assert fuzz_node.dump() == before, f"{method}: fuzz input changed the database"
    assert TALLY[method] >= EXAMPLES // 2


def test_fuzz_victim_still_recovers(fuzz_node: FuzzNode) -> None:
    """After every RPC was fuzzed, the registered user still recovers, with no guess lost."""
    with pakr.Client.from_manifest(
        fuzz_node.cluster.manifest_path,
        tenant=fuzz_node.cluster.tenant,
        token_provider=pakr.dev_token_provider(fuzz_node.cluster.tenant_key_path),
        operator_key=fuzz_node.cluster.operator_public_key(),
    ) as client:
        assert client.recover("victim", "pw") == b"victim's secret"
        status = client.status("victim")
    total = sum(TALLY.values())
    print(f"\nfuzz: {total} requests ({', '.join(f'{k}={v}' for k, v in TALLY.items())})")
    print(f"fuzz: status codes {CODES}; unparseable bodies {sum(UNPARSEABLE.values())}")
    assert status is not None
