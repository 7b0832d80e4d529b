"""The HPKE-sealed fields of the wire: what each holds, byte for byte, and for whom.

Register2 carries ``sealed_shares``: ``k_i || s_i || unlock_tag_i || encrypted_secret``
(32 + 32 + 32 + 145 bytes) sealed to the node's HPKE key from the signed manifest. Recover3's
reply carries ``sealed_share``: ``s_i || encrypted_secret || secret_commitment_i``
(32 + 145 + 32) sealed to the fresh key the client sent in its Recover3 request (and bound
into its unlock proof). See :mod:`pakr.proto.hpke` for the suite and the ``info`` strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pakr.proto.errors import MalformedMessage
from pakr.proto.group import Scalar
from pakr.proto.hpke import HpkePrivateKey, HpkePublicKey, recover3_info, register2_info
from pakr.proto.messages import MAC_LEN, Recover3Reply, UserRef
from pakr.proto.seal import CIPHERTEXT_LEN

SCALAR_LEN = 32
REGISTER2_PLAINTEXT_LEN = 2 * SCALAR_LEN + MAC_LEN + CIPHERTEXT_LEN  # 241
RECOVER3_PLAINTEXT_LEN = SCALAR_LEN + CIPHERTEXT_LEN + MAC_LEN  # 209


@dataclass(frozen=True, slots=True)
class Register2Shares:
    """The share-bearing fields of one Register2 (never in a repr)."""

    oprf_key_share: Scalar = field(repr=False)
    secret_share: Scalar = field(repr=False)
    unlock_tag: bytes = field(repr=False)
    encrypted_secret: bytes = field(repr=False)


def seal_register2_shares(
    shares: Register2Shares,
    *,
    user: UserRef,
    node_id: bytes,
    version: bytes,
    epoch: int,
    node_key: HpkePublicKey,
) -> bytes:
    """``sealed_shares`` for one node's Register2."""
    plaintext = (
        shares.oprf_key_share.encoded
        + shares.secret_share.encoded
        + shares.unlock_tag
        + shares.encrypted_secret
    )
    assert len(plaintext) == REGISTER2_PLAINTEXT_LEN
    return node_key.seal(plaintext, register2_info(user, node_id, version, epoch))


def open_register2_shares(
    sealed: bytes,
    *,
    user: UserRef,
    node_id: bytes,
    version: bytes,
    epoch: int,
    node_key: HpkePrivateKey,
) -> Register2Shares:
    """The node opens ``sealed_shares``; ``MalformedMessage`` if it does not open or parse."""
    plaintext = node_key.open(
        sealed, register2_info(user, node_id, version, epoch), "sealed_shares"
    )
    _length("sealed_shares", plaintext, REGISTER2_PLAINTEXT_LEN)
    return Register2Shares(
        oprf_key_share=_scalar("oprf_key_share", plaintext[:32]),
        secret_share=_scalar("secret_share", plaintext[32:64]),
        unlock_tag=plaintext[64:96],
        encrypted_secret=plaintext[96:],
    )


def seal_recover3_reply(
    reply: Recover3Reply,
    *,
    user: UserRef,
    node_id: bytes,
    version: bytes,
    attempt_id: bytes,
    reply_key: HpkePublicKey,
) -> bytes:
    """``sealed_share`` of a Recover3 reply, to the client's fresh key."""
    plaintext = reply.secret_share.encoded + reply.encrypted_secret + reply.secret_commitment
    assert len(plaintext) == RECOVER3_PLAINTEXT_LEN
    return reply_key.seal(plaintext, recover3_info(user, node_id, version, attempt_id))


def open_recover3_reply(
    sealed: bytes,
    *,
    user: UserRef,
    node_id: bytes,
    version: bytes,
    attempt_id: bytes,
    reply_key: HpkePrivateKey,
) -> Recover3Reply:
    """The client opens ``sealed_share``; ``MalformedMessage`` if it does not open or parse."""
    plaintext = reply_key.open(
        sealed, recover3_info(user, node_id, version, attempt_id), "sealed_share"
    )
    _length("sealed_share", plaintext, RECOVER3_PLAINTEXT_LEN)
    return Recover3Reply(
        secret_share=_scalar("secret_share", plaintext[:32]),
        encrypted_secret=plaintext[32 : 32 + CIPHERTEXT_LEN],
        secret_commitment=plaintext[32 + CIPHERTEXT_LEN :],
    )


def _length(name: str, plaintext: bytes, length: int) -> None:
    if len(plaintext) != length:
        raise MalformedMessage(f"{name} holds {len(plaintext)} bytes, not {length}")


def _scalar(name: str, value: bytes) -> Scalar:
    try:
        return Scalar.decode(value)
    except MalformedMessage as exc:
        raise MalformedMessage(f"{name}: {exc}") from None
