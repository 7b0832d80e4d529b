"""Conversion between the protobuf messages of ``node.proto`` and the protocol dataclasses.

Decoding validates every field before anything else sees it: lengths, canonical scalars,
valid non-identity elements, integer ranges, UTF-8 and size limits. Every failure is a
:class:`MalformedMessage` naming the field, so the node answers INVALID_REQUEST and changes
nothing stored, and the SDK treats a malformed reply as that node misbehaving.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as _PbMessage

from pakr.proto.errors import ErrorKind, MalformedMessage, NodeRefusal
from pakr.proto.group import Element, Scalar
from pakr.proto.hpke import HpkePrivateKey, HpkePublicKey
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import (
    ATTEMPT_ID_LEN,
    MAC_LEN,
    MAX_EPOCH,
    MAX_GUESSES_LIMIT,
    MAX_TENANT_BYTES,
    MAX_USER_ID_BYTES,
    NONCE_LEN,
    PROTOCOL_VERSION,
    REQUEST_ID_LEN,
    RESET_NONCE_LEN,
    SIGNATURE_LEN,
    VERIFYING_KEY_LEN,
    VERSION_LEN,
    Delete,
    Recover2,
    Recover2Reply,
    Recover3,
    Recover3Reply,
    Register2,
    Register3,
    ResetGuesses,
    UserRef,
    UserStatus,
    VersionInfo,
)
from pakr.proto.oprf import Proof
from pakr.proto.sealed import (
    Register2Shares,
    open_recover3_reply,
    open_register2_shares,
    seal_recover3_reply,
    seal_register2_shares,
)
from pakr.proto.v1 import node_pb2 as pb

ERROR_METADATA_KEY = "pakr-error-bin"
MAX_MESSAGE_BYTES = 64 * 1024

_M = TypeVar("_M", bound=_PbMessage)


def parse(message_type: type[_M], data: bytes) -> _M:
    """Parse serialized bytes into ``message_type``; ``MalformedMessage`` on anything wrong.

    gRPC parses requests itself; this is for bytes from elsewhere (storage, trailers, tests)
    and keeps protobuf's own exceptions from leaking past the wire layer.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    message = message_type()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise MalformedMessage(
            f"{message_type.__name__} could not be parsed: not valid protobuf"
        ) from exc
    return message


# ------------------------------------------------------------------------ field checks


def _exact(name: str, value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise MalformedMessage(f"{name} must be {length} bytes, got {len(value)}")
    return bytes(value)


def _scalar(name: str, value: bytes) -> Scalar:
    try:
        return Scalar.decode(_exact(name, value, 32))
    except MalformedMessage as exc:
        raise MalformedMessage(f"{name}: {exc}") from None


def _element(name: str, value: bytes) -> Element:
    try:
        return Element.decode(_exact(name, value, 32))
    except MalformedMessage as exc:
        raise MalformedMessage(f"{name}: {exc}") from None


def _verifying_key(name: str, value: bytes) -> bytes:
    raw = _exact(name, value, VERIFYING_KEY_LEN)
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise MalformedMessage(f"{name} is not an Ed25519 public key") from None
    return raw


def _epoch(name: str, value: int) -> int:
    if not 1 <= value <= MAX_EPOCH:
        raise MalformedMessage(f"{name} must be 1..2^64-1")
    return value


def _text(name: str, value: str, max_bytes: int, *, allow_empty: bool = False) -> str:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedMessage(f"{name} is not valid UTF-8") from None
    if size > max_bytes or (size == 0 and not allow_empty):
        low = 0 if allow_empty else 1
        raise MalformedMessage(f"{name} must be {low}..{max_bytes} UTF-8 bytes, got {size}")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        # One rule for every store: PostgreSQL text cannot hold NUL, and control characters
        # in an identifier only ever confuse logs and audit readers.
        raise MalformedMessage(f"{name} must not contain NUL or other control characters")
    return value


def argon2_from_pb(msg: pb.Argon2Params) -> Argon2Params:
    """Decode Argon2 parameters; bounds are the client's policy (``Argon2Params.check``)."""
    if msg.memory_kib == 0 or msg.iterations == 0 or msg.parallelism == 0:
        raise MalformedMessage("argon2 parameters must all be positive")
    return Argon2Params(
        memory_kib=msg.memory_kib, iterations=msg.iterations, parallelism=msg.parallelism
    )


def argon2_to_pb(params: Argon2Params) -> pb.Argon2Params:
    return pb.Argon2Params(
        memory_kib=params.memory_kib,
        iterations=params.iterations,
        parallelism=params.parallelism,
    )


# ------------------------------------------------------------------------ header


@dataclass(frozen=True, slots=True)
class Header:
    """A validated request header."""

    request_id: bytes
    user: UserRef


def header_from_pb(msg: pb.RequestHeader, *, allow_empty_user: bool = False) -> Header:
    """Validate a request header; an unknown protocol version is UPGRADE_REQUIRED."""
    if msg.protocol_version != PROTOCOL_VERSION:
        raise NodeRefusal(
            ErrorKind.UPGRADE_REQUIRED,
            f"this node speaks pakr protocol {PROTOCOL_VERSION}, the request uses"
            f" {msg.protocol_version}; upgrade the older side",
        )
    request_id = _exact("header.request_id", msg.request_id, REQUEST_ID_LEN)
    tenant = _text("header.tenant", msg.tenant, MAX_TENANT_BYTES)
    user_id = _text("header.user_id", msg.user_id, MAX_USER_ID_BYTES, allow_empty=allow_empty_user)
    return Header(request_id=request_id, user=UserRef(tenant=tenant, user_id=user_id))


def header_to_pb(request_id: bytes, user: UserRef) -> pb.RequestHeader:
    return pb.RequestHeader(
        protocol_version=PROTOCOL_VERSION,
        request_id=request_id,
        tenant=user.tenant,
        user_id=user.user_id,
    )


# ------------------------------------------------------------------------ status


def version_info_from_pb(msg: pb.VersionInfo) -> VersionInfo:
    return VersionInfo(
        version=_exact("version", msg.version, VERSION_LEN),
        epoch=_epoch("epoch", msg.epoch),
        argon2=argon2_from_pb(msg.argon2),
        guesses_remaining=min(msg.guesses_remaining, MAX_GUESSES_LIMIT),
        locked=msg.locked,
        max_guesses=min(msg.max_guesses, MAX_GUESSES_LIMIT),
    )


def version_info_to_pb(info: VersionInfo) -> pb.VersionInfo:
    return pb.VersionInfo(
        version=info.version,
        epoch=info.epoch,
        argon2=argon2_to_pb(info.argon2),
        guesses_remaining=info.guesses_remaining,
        locked=info.locked,
        max_guesses=info.max_guesses,
    )


def status_from_pb(msg: pb.UserStatus) -> UserStatus:
    """Decode a node's user status (Register1/Recover1 replies)."""
    committed = version_info_from_pb(msg.committed) if msg.HasField("committed") else None
    pending = version_info_from_pb(msg.pending) if msg.HasField("pending") else None
    return UserStatus(committed=committed, pending=pending, tombstone_epoch=msg.tombstone_epoch)


def status_to_pb(status: UserStatus) -> pb.UserStatus:
    msg = pb.UserStatus(tombstone_epoch=status.tombstone_epoch)
    if status.committed is not None:
        msg.committed.CopyFrom(version_info_to_pb(status.committed))
    if status.pending is not None:
        msg.pending.CopyFrom(version_info_to_pb(status.pending))
    return msg


# ------------------------------------------------------------------------ register


def register2_from_pb(
    msg: pb.Register2Request, *, user: UserRef, node_id: bytes, node_key: HpkePrivateKey
) -> Register2:
    """Decode a Register2, opening its ``sealed_shares`` with the node's HPKE key."""
    if not 1 <= msg.max_guesses <= MAX_GUESSES_LIMIT:
        raise MalformedMessage(f"max_guesses must be 1..{MAX_GUESSES_LIMIT}")
    if not msg.HasField("argon2"):
        raise MalformedMessage("argon2 parameters are missing")
    expected = _exact("expected", msg.expected, VERSION_LEN) if msg.expected else None
    version = _exact("version", msg.version, VERSION_LEN)
    epoch = _epoch("epoch", msg.epoch)
    shares = open_register2_shares(
        msg.sealed_shares,
        user=user,
        node_id=node_id,
        version=version,
        epoch=epoch,
        node_key=node_key,
    )
    return Register2(
        version=version,
        epoch=epoch,
        expected=expected,
        oprf_key_share=shares.oprf_key_share,
        oprf_public_share=_element("oprf_public_share", msg.oprf_public_share),
        oprf_key_signature=_exact("oprf_key_signature", msg.oprf_key_signature, SIGNATURE_LEN),
        verifying_key=_verifying_key("verifying_key", msg.verifying_key),
        commitment=_exact("commitment", msg.commitment, MAC_LEN),
        unlock_tag=shares.unlock_tag,
        secret_share=shares.secret_share,
        encrypted_secret=shares.encrypted_secret,
        secret_commitment=_exact("secret_commitment", msg.secret_commitment, MAC_LEN),
        max_guesses=msg.max_guesses,
        argon2=argon2_from_pb(msg.argon2),
    )


def register2_to_pb(
    header: pb.RequestHeader, req: Register2, *, node_id: bytes, node_key: HpkePublicKey
) -> pb.Register2Request:
    """Encode a Register2, sealing its share-bearing fields to the node's HPKE key."""
    user = UserRef(header.tenant, header.user_id)
    shares = Register2Shares(
        oprf_key_share=req.oprf_key_share,
        secret_share=req.secret_share,
        unlock_tag=req.unlock_tag,
        encrypted_secret=req.encrypted_secret,
    )
    return pb.Register2Request(
        header=header,
        version=req.version,
        epoch=req.epoch,
        expected=req.expected or b"",
        oprf_public_share=req.oprf_public_share.encoded,
        oprf_key_signature=req.oprf_key_signature,
        verifying_key=req.verifying_key,
        commitment=req.commitment,
        secret_commitment=req.secret_commitment,
        max_guesses=req.max_guesses,
        argon2=argon2_to_pb(req.argon2),
        sealed_shares=seal_register2_shares(
            shares,
            user=user,
            node_id=node_id,
            version=req.version,
            epoch=req.epoch,
            node_key=node_key,
        ),
    )


def register3_from_pb(msg: pb.Register3Request) -> Register3:
    return Register3(version=_exact("version", msg.version, VERSION_LEN))


# ------------------------------------------------------------------------ recover


def recover2_from_pb(msg: pb.Recover2Request) -> Recover2:
    return Recover2(
        version=_exact("version", msg.version, VERSION_LEN),
        attempt_id=_exact("attempt_id", msg.attempt_id, ATTEMPT_ID_LEN),
        blinded_element=_element("blinded_element", msg.blinded_element),
    )


def recover2_to_pb(header: pb.RequestHeader, req: Recover2) -> pb.Recover2Request:
    return pb.Recover2Request(
        header=header,
        version=req.version,
        attempt_id=req.attempt_id,
        blinded_element=req.blinded_element.encoded,
    )


def recover2_reply_from_pb(msg: pb.Recover2Response) -> Recover2Reply:
    return Recover2Reply(
        evaluated_element=_element("evaluated_element", msg.evaluated_element),
        proof=Proof.decode(_exact("proof", msg.proof, 64)),
        oprf_public_share=_element("oprf_public_share", msg.oprf_public_share),
        oprf_key_signature=_exact("oprf_key_signature", msg.oprf_key_signature, SIGNATURE_LEN),
        verifying_key=_verifying_key("verifying_key", msg.verifying_key),
        commitment=_exact("commitment", msg.commitment, MAC_LEN),
        guesses_remaining=min(msg.guesses_remaining, MAX_GUESSES_LIMIT),
        nonce=_exact("nonce", msg.nonce, NONCE_LEN),
        max_guesses=_max_guesses(msg.max_guesses),
    )


def _max_guesses(value: int) -> int:
    if not 1 <= value <= MAX_GUESSES_LIMIT:
        raise MalformedMessage(f"max_guesses must be 1..{MAX_GUESSES_LIMIT}, got {value}")
    return value


def recover2_reply_to_pb(reply: Recover2Reply) -> pb.Recover2Response:
    return pb.Recover2Response(
        evaluated_element=reply.evaluated_element.encoded,
        proof=reply.proof.encode(),
        oprf_public_share=reply.oprf_public_share.encoded,
        oprf_key_signature=reply.oprf_key_signature,
        verifying_key=reply.verifying_key,
        commitment=reply.commitment,
        guesses_remaining=reply.guesses_remaining,
        nonce=reply.nonce,
        max_guesses=reply.max_guesses,
    )


def recover3_from_pb(msg: pb.Recover3Request) -> Recover3:
    reply_key = HpkePublicKey.decode(msg.reply_key, "reply_key")
    return Recover3(
        version=_exact("version", msg.version, VERSION_LEN),
        attempt_id=_exact("attempt_id", msg.attempt_id, ATTEMPT_ID_LEN),
        unlock_proof=_exact("unlock_proof", msg.unlock_proof, MAC_LEN),
        reply_key=reply_key.encoded,
    )


def recover3_to_pb(header: pb.RequestHeader, req: Recover3) -> pb.Recover3Request:
    return pb.Recover3Request(
        header=header,
        version=req.version,
        attempt_id=req.attempt_id,
        unlock_proof=req.unlock_proof,
        reply_key=req.reply_key,
    )


def recover3_reply_from_pb(
    msg: pb.Recover3Response, *, user: UserRef, node_id: bytes, request: Recover3
) -> Recover3Reply:
    """Open a Recover3 reply with the private half of the request's reply key."""
    if request.reply_seed is None:
        raise ValueError("the Recover3 request carries no reply key seed (client side only)")
    return open_recover3_reply(
        msg.sealed_share,
        user=user,
        node_id=node_id,
        version=request.version,
        attempt_id=request.attempt_id,
        reply_key=HpkePrivateKey.from_seed(request.reply_seed),
    )


def recover3_reply_to_pb(
    reply: Recover3Reply, *, user: UserRef, node_id: bytes, request: Recover3
) -> pb.Recover3Response:
    """Seal a Recover3 reply to the key the request carries (bound by its unlock proof)."""
    return pb.Recover3Response(
        sealed_share=seal_recover3_reply(
            reply,
            user=user,
            node_id=node_id,
            version=request.version,
            attempt_id=request.attempt_id,
            reply_key=HpkePublicKey.decode(request.reply_key, "reply_key"),
        )
    )


# ------------------------------------------------------------------------ reset


def recover1_status_from_pb(msg: pb.Recover1Response) -> UserStatus:
    """A Recover1 reply: the status with the node's reset nonce (dropped when malformed:
    the node then simply gets no reset)."""
    status = status_from_pb(msg.status)
    nonce = msg.reset_nonce if len(msg.reset_nonce) == RESET_NONCE_LEN else b""
    return UserStatus(
        committed=status.committed,
        pending=status.pending,
        tombstone_epoch=status.tombstone_epoch,
        reset_nonce=nonce,
    )


def reset_from_pb(msg: pb.ResetGuessesRequest) -> ResetGuesses:
    return ResetGuesses(
        version=_exact("version", msg.version, VERSION_LEN),
        nonce=_exact("nonce", msg.nonce, RESET_NONCE_LEN),
        proof=_exact("proof", msg.proof, MAC_LEN),
    )


def reset_to_pb(header: pb.RequestHeader, req: ResetGuesses) -> pb.ResetGuessesRequest:
    return pb.ResetGuessesRequest(
        header=header, version=req.version, nonce=req.nonce, proof=req.proof
    )


# ------------------------------------------------------------------------ delete


def delete_from_pb(msg: pb.DeleteRequest) -> Delete:
    return Delete(epoch=_epoch("epoch", msg.epoch))


# ------------------------------------------------------------------------ errors


def error_detail_to_pb(error: NodeRefusal) -> pb.ErrorDetail:
    detail = pb.ErrorDetail(kind=int(error.kind), message=str(error))  # type: ignore[arg-type]
    if error.guesses_remaining is not None:
        detail.has_guesses_remaining = True
        detail.guesses_remaining = error.guesses_remaining
    if error.retry_after is not None:
        detail.retry_after_seconds = error.retry_after
    return detail


def error_detail_from_bytes(data: bytes) -> NodeRefusal:
    """Decode the ``pakr-error-bin`` trailer into a :class:`NodeRefusal`."""
    detail = parse(pb.ErrorDetail, data)
    try:
        kind = ErrorKind(detail.kind)
    except ValueError:
        kind = ErrorKind.UNSPECIFIED
    return NodeRefusal(
        kind,
        detail.message[:500],
        guesses_remaining=detail.guesses_remaining if detail.has_guesses_remaining else None,
        retry_after=detail.retry_after_seconds or None,
    )
