"""Wire decoders: decode(encode(x)) == x, and random bytes or fields fail only as typed errors.

Every decoder in ``pakr.proto.wire`` is what a node runs on attacker-controlled requests and
what the SDK runs on possibly malicious replies, so each must raise ``MalformedMessage`` (or
``NodeRefusal`` for an unknown protocol version) and nothing else on any input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from pakr.proto import wire
from pakr.proto.errors import ErrorKind, MalformedMessage, NodeRefusal
from pakr.proto.group import Element, Scalar
from pakr.proto.hpke import HpkePrivateKey, recover3_info
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.messages import (
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    Register2,
    UserRef,
    UserStatus,
    VersionInfo,
)
from pakr.proto.oprf import Proof
from pakr.proto.v1 import node_pb2 as pb

TYPED = (MalformedMessage, NodeRefusal)

scalars = st.integers(min_value=1, max_value=2**252).map(Scalar.from_int)
elements = scalars.map(Element.base_mult)
ids = st.binary(min_size=16, max_size=16)
macs = st.binary(min_size=32, max_size=32)
epochs = st.integers(min_value=1, max_value=2**64 - 1)
verifying_keys = st.builds(lambda: Ed25519PrivateKey.generate().public_key().public_bytes_raw())
argon = st.builds(
    Argon2Params,
    memory_kib=st.integers(19456, 1 << 20),
    iterations=st.integers(2, 64),
    parallelism=st.integers(1, 16),
)
HEADER = wire.header_to_pb(bytes(16), UserRef("acme", "alice"))
USER = UserRef("acme", "alice")
NODE_ID = bytes(range(16))
NODE_KEY = HpkePrivateKey.from_seed(bytes(range(32)))
REPLY_KEY = HpkePrivateKey.from_seed(bytes(range(1, 33)))


@given(
    st.builds(
        Register2,
        version=ids,
        epoch=epochs,
        expected=st.none() | ids,
        oprf_key_share=scalars,
        oprf_public_share=elements,
        oprf_key_signature=st.binary(min_size=64, max_size=64),
        verifying_key=verifying_keys,
        commitment=macs,
        unlock_tag=macs,
        secret_share=scalars,
        encrypted_secret=st.binary(min_size=145, max_size=145),
        secret_commitment=macs,
        max_guesses=st.integers(1, 100),
        argon2=argon,
    )
)
def test_register2_round_trip(req: Register2) -> None:
    msg = wire.register2_to_pb(HEADER, req, node_id=NODE_ID, node_key=NODE_KEY.public)
    data = msg.SerializeToString()
    back = wire.parse(pb.Register2Request, data)
    assert wire.register2_from_pb(back, user=USER, node_id=NODE_ID, node_key=NODE_KEY) == req


@given(st.builds(Recover2, version=ids, attempt_id=ids, blinded_element=elements))
def test_recover2_round_trip(req: Recover2) -> None:
    data = wire.recover2_to_pb(HEADER, req).SerializeToString()
    assert wire.recover2_from_pb(wire.parse(pb.Recover2Request, data)) == req


@given(
    st.builds(
        Recover2Reply,
        evaluated_element=elements,
        proof=st.builds(Proof, c=scalars, s=scalars),
        oprf_public_share=elements,
        oprf_key_signature=st.binary(min_size=64, max_size=64),
        verifying_key=verifying_keys,
        commitment=macs,
        guesses_remaining=st.integers(0, 100),
        nonce=ids,
        max_guesses=st.integers(1, 100),
    )
)
def test_recover2_reply_round_trip(reply: Recover2Reply) -> None:
    data = wire.recover2_reply_to_pb(reply).SerializeToString()
    assert wire.recover2_reply_from_pb(wire.parse(pb.Recover2Response, data)) == reply


@given(
    st.builds(
        Recover3,
        version=ids,
        attempt_id=ids,
        unlock_proof=macs,
        reply_key=st.just(REPLY_KEY.public.encoded),
    )
)
def test_recover3_round_trip(req: Recover3) -> None:
    data = wire.recover3_to_pb(HEADER, req).SerializeToString()
    assert wire.recover3_from_pb(wire.parse(pb.Recover3Request, data)) == req


@given(
    st.builds(
        Recover3Reply,
        secret_share=scalars,
        encrypted_secret=st.binary(min_size=145, max_size=145),
        secret_commitment=macs,
    )
)
def test_recover3_reply_round_trip(reply: Recover3Reply) -> None:
    request = Recover3(
        bytes(16), bytes(16), bytes(32), REPLY_KEY.public.encoded, reply_seed=REPLY_KEY.seed
    )
    msg = wire.recover3_reply_to_pb(reply, user=USER, node_id=NODE_ID, request=request)
    data = msg.SerializeToString()
    back = wire.parse(pb.Recover3Response, data)
    assert wire.recover3_reply_from_pb(back, user=USER, node_id=NODE_ID, request=request) == reply
    assert reply.secret_share.encoded not in data and reply.encrypted_secret not in data


infos = st.builds(
    VersionInfo,
    version=ids,
    epoch=epochs,
    argon2=argon,
    guesses_remaining=st.integers(0, 100),
    locked=st.booleans(),
)


@given(
    st.builds(
        UserStatus,
        committed=st.none() | infos,
        pending=st.none() | infos,
        tombstone_epoch=st.integers(0, 2**64 - 1),
    )
)
def test_status_round_trip(status: UserStatus) -> None:
    data = wire.status_to_pb(status).SerializeToString()
    assert wire.status_from_pb(wire.parse(pb.UserStatus, data)) == status


@given(st.text(max_size=80), st.integers(0, 100) | st.none(), st.floats(0.1, 1e4) | st.none())
def test_error_detail_round_trip(message: str, guesses: int | None, retry: float | None) -> None:
    refusal = NodeRefusal(
        ErrorKind.NO_GUESSES, message, guesses_remaining=guesses, retry_after=retry
    )
    back = wire.error_detail_from_bytes(wire.error_detail_to_pb(refusal).SerializeToString())
    assert back.kind is ErrorKind.NO_GUESSES and str(back) == message[:500]
    assert back.guesses_remaining == guesses
    assert back.retry_after == pytest.approx(retry) if retry else back.retry_after is None


DECODERS: list[tuple[type[Message], Callable[[Any], object]]] = [
    (pb.RequestHeader, wire.header_from_pb),
    (
        pb.Register2Request,
        lambda m: wire.register2_from_pb(m, user=USER, node_id=NODE_ID, node_key=NODE_KEY),
    ),
    (pb.Register3Request, wire.register3_from_pb),
    (pb.Recover2Request, wire.recover2_from_pb),
    (pb.Recover2Response, wire.recover2_reply_from_pb),
    (pb.Recover3Request, wire.recover3_from_pb),
    (
        pb.Recover3Response,
        lambda m: wire.recover3_reply_from_pb(
            m,
            user=USER,
            node_id=NODE_ID,
            request=Recover3(
                bytes(16), bytes(16), bytes(32), REPLY_KEY.public.encoded, REPLY_KEY.seed
            ),
        ),
    ),
    (pb.DeleteRequest, wire.delete_from_pb),
    (pb.UserStatus, wire.status_from_pb),
    (pb.VersionInfo, wire.version_info_from_pb),
    (pb.Argon2Params, wire.argon2_from_pb),
]
IDS = [cls.__name__ for cls, _ in DECODERS]


@pytest.mark.parametrize(("cls", "decode"), DECODERS, ids=IDS)
@settings(max_examples=150)
@given(data=st.binary(max_size=400))
def test_random_bytes_fail_typed(
    cls: type[Message], decode: Callable[[Any], object], data: bytes
) -> None:
    with contextlib.suppress(TYPED):
        decode(wire.parse(cls, data))


def _field_value(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=200),
            st.sampled_from([16, 32, 64, 145, 1216, 1377, 1345]).flatmap(
                lambda n: st.binary(min_size=n, max_size=n)
            ),
        )
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.text(max_size=200)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        return st.integers(-(2**31), 2**31 - 1)
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats(allow_nan=False)
    raise AssertionError(f"no strategy for {field.full_name}")


def messages(cls: type[Message], depth: int = 0) -> st.SearchStrategy[Message]:
    """Structurally valid protobufs with arbitrary (mostly invalid) field contents."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in cls.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth < 2:
                sub = getattr(pb, field.message_type.name)
                parts[field.name] = st.none() | messages(sub, depth + 1)
        else:
            parts[field.name] = st.none() | _field_value(field)

    def build(values: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in values.items():
            if value is None:
                continue
            if isinstance(value, Message):
                getattr(msg, name).CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return st.fixed_dictionaries(parts).map(build)


@pytest.mark.parametrize(("cls", "decode"), DECODERS, ids=IDS)
@settings(max_examples=150)
@given(data=st.data())
def test_random_fields_fail_typed(
    cls: type[Message], decode: Callable[[Any], object], data: st.DataObject
) -> None:
    msg = data.draw(messages(cls))
    with contextlib.suppress(TYPED):
        decode(msg)


def test_parse_refuses_oversized_and_garbage() -> None:
    with pytest.raises(MalformedMessage, match="larger"):
        wire.parse(pb.Recover2Request, bytes(64 * 1024 + 1))
    with pytest.raises(MalformedMessage, match="not valid protobuf"):
        wire.parse(pb.Recover2Request, b"\xff\xff\xff")


def test_header_checks() -> None:
    good = wire.header_from_pb(HEADER)
    assert good.user == UserRef("acme", "alice")
    bad = pb.RequestHeader()
    bad.CopyFrom(HEADER)
    for old_or_new in (1, 3):  # protocol 1 sent shares in the clear: refused, typed
        bad.protocol_version = old_or_new
        with pytest.raises(NodeRefusal) as info:
            wire.header_from_pb(bad)
        assert info.value.kind is ErrorKind.UPGRADE_REQUIRED
    bad.protocol_version = 2
    bad.user_id = "x" * 129
    with pytest.raises(MalformedMessage, match="user_id"):
        wire.header_from_pb(bad)
    for control in ("\x00", "\x1f", "\x7f", "\x85"):  # one rule for every store
        for field in ("user_id", "tenant"):
            bad.CopyFrom(HEADER)
            setattr(bad, field, f"al{control}ice")
            with pytest.raises(MalformedMessage, match="control characters"):
                wire.header_from_pb(bad)
    bad.CopyFrom(HEADER)
    bad.user_id = "ålice 😀 tab-free"
    assert wire.header_from_pb(bad).user.user_id == "ålice 😀 tab-free"


def test_identity_and_noncanonical_rejected() -> None:
    req = wire.recover2_to_pb(
        HEADER, Recover2(bytes(16), bytes(16), Element.base_mult(Scalar.from_int(5)))
    )
    req.blinded_element = bytes(32)  # the identity
    with pytest.raises(MalformedMessage, match="blinded_element"):
        wire.recover2_from_pb(req)
    # A non-canonical share inside a correctly sealed reply is still refused after opening.
    request = Recover3(
        bytes(16), bytes(16), bytes(32), REPLY_KEY.public.encoded, reply_seed=REPLY_KEY.seed
    )
    sealed = REPLY_KEY.public.seal(
        b"\xff" * 32 + bytes(145) + bytes(32),
        recover3_info(USER, NODE_ID, request.version, request.attempt_id),
    )
    with pytest.raises(MalformedMessage, match="secret_share"):
        wire.recover3_reply_from_pb(
            pb.Recover3Response(sealed_share=sealed), user=USER, node_id=NODE_ID, request=request
        )
    # ... and one sealed for another attempt does not open at all.
    elsewhere = REPLY_KEY.public.seal(
        Scalar.from_int(7).encoded + bytes(145) + bytes(32),
        recover3_info(USER, NODE_ID, request.version, bytes(range(16))),
    )
    with pytest.raises(MalformedMessage, match="does not decrypt"):
        wire.recover3_reply_from_pb(
            pb.Recover3Response(sealed_share=elsewhere), user=USER, node_id=NODE_ID, request=request
        )


def test_argon2_defaults_round_trip() -> None:
    assert wire.argon2_from_pb(wire.argon2_to_pb(DEV_ARGON2)) == DEV_ARGON2
