"""End-to-end encryption of share-bearing fields with HPKE (RFC 9180), base mode, single shot.

TLS protects a request only as far as whatever terminates it (a load balancer, an ingress, a
mis-issued certificate), and browsers cannot pin certificates at all. Every field that would
let a reader guess passwords offline therefore travels HPKE-encrypted to the party that needs
it: Register2's shares to the node's own key (published in the signed manifest), Recover3's
reply to a fresh key the client sends with the request.

Suite: KEM X-Wing (ML-KEM-768 + X25519, ``MLKEM768-X25519``, KEM id 0x647a), HKDF-SHA256,
ChaCha20-Poly1305, from ``cryptography``. A private key is X-Wing's 32-byte seed, expanded
with SHAKE256 into the ML-KEM-768 seed (64 bytes) and the X25519 scalar (32), exactly as the
X-Wing specification does, so any X-Wing implementation derives the same key pair from it.
Public keys are ``pk_ML-KEM (1184) || pk_X25519 (32)``; a ciphertext is ``enc (1120) || ct``.
The ``info`` of every encryption is a TupleHash over the message's context (labels in
:mod:`pakr.proto.kdf`), so a ciphertext opens only for the user, version, node and step it was
made for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from Crypto.Hash import SHAKE256
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pakr.proto import base64url, kdf
from pakr.proto.errors import MalformedMessage
from pakr.proto.messages import NODE_ID_LEN, VERSION_LEN, UserRef

SEED_LEN = 32
MLKEM_PUBLIC_LEN = 1184
X25519_LEN = 32
PUBLIC_KEY_LEN = MLKEM_PUBLIC_LEN + X25519_LEN  # 1216
ENC_LEN = 1120
TAG_LEN = 16
SUITE_NAME = "X-Wing(ML-KEM-768+X25519) / HKDF-SHA256 / ChaCha20-Poly1305"

_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)

# A fixed X25519 key to test public keys with: the exchange fails exactly when the peer's
# point has small order (the shared secret is all zeros), which would make sealing to the
# key fail later, after a node had already committed what the sealed reply answers.
_PROBE = x25519.X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


@dataclass(frozen=True, slots=True)
class HpkePublicKey:
    """An X-Wing public key (1216 bytes), checked to parse on construction."""

    encoded: bytes
    _key: hpke.MLKEM768X25519PublicKey = field(repr=False, compare=False)

    @classmethod
    def decode(cls, raw: bytes, what: str = "hpke public key") -> HpkePublicKey:
        """Parse ``pk_M || pk_X``; ``MalformedMessage`` when it is not one."""
        if len(raw) != PUBLIC_KEY_LEN:
            raise MalformedMessage(f"{what} must be {PUBLIC_KEY_LEN} bytes, got {len(raw)}")
        try:
            x_key = x25519.X25519PublicKey.from_public_bytes(raw[MLKEM_PUBLIC_LEN:])
            _PROBE.exchange(x_key)  # ValueError for a low-order point (all-zero secret)
            key = hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(raw[:MLKEM_PUBLIC_LEN]), x_key
            )
        except ValueError:
            raise MalformedMessage(f"{what} is not a valid X-Wing public key") from None
        return cls(bytes(raw), key)

    @classmethod
    def from_text(cls, text: str, what: str = "hpke public key") -> HpkePublicKey:
        """Parse the unpadded base64url form (manifests, ``hpke.pub``)."""
        try:
            raw = base64url.decode(text.strip())
        except ValueError:
            raise MalformedMessage(f"{what} is not base64url") from None
        return cls.decode(raw, what)

    @property
    def text(self) -> str:
        """Unpadded base64url, as manifests and ``hpke.pub`` hold it."""
        return base64url.encode(self.encoded)

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        """``enc || ct``: ``plaintext`` encrypted to this key under ``info``."""
        return _SUITE.encrypt(plaintext, self._key, info=info)


@dataclass(frozen=True, slots=True)
class HpkePrivateKey:
    """An X-Wing private key, kept as its 32-byte seed (never in a repr)."""

    seed: bytes = field(repr=False)
    public: HpkePublicKey = field(compare=False)
    _key: hpke.MLKEM768X25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> HpkePrivateKey:
        """The key pair X-Wing derives from ``seed`` (SHAKE256 expansion to 96 bytes)."""
        if len(seed) != SEED_LEN:
            raise MalformedMessage(f"an hpke private key is a {SEED_LEN}-byte seed")
        expanded = SHAKE256.new(seed).read(96)
        mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
        x_key = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
        public_raw = mlkem_key.public_key().public_bytes_raw() + x_key.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        key = hpke.MLKEM768X25519PrivateKey(mlkem_key, x_key)
        return cls(bytes(seed), HpkePublicKey(public_raw, key.public_key()), key)

    def open(self, ciphertext: bytes, info: bytes, what: str) -> bytes:
        """Decrypt ``enc || ct``; ``MalformedMessage`` naming ``what`` when it does not open."""
        if len(ciphertext) < ENC_LEN + TAG_LEN:
            raise MalformedMessage(f"{what} is too short to be an HPKE ciphertext")
        try:
            return _SUITE.decrypt(ciphertext, self._key, info=info)
        except (InvalidTag, ValueError):
            raise MalformedMessage(
                f"{what} does not decrypt: sealed to another key or for another request"
            ) from None


def register2_info(user: UserRef, node_id: bytes, version: bytes, epoch: int) -> bytes:
    """HPKE ``info`` of Register2's sealed shares: this user, node, version and epoch."""
    return kdf.tuple_hash(
        kdf.LABEL_HPKE_REGISTER2,
        user.tenant.encode("utf-8"),
        user.user_id.encode("utf-8"),
        _fixed(node_id, NODE_ID_LEN),
        _fixed(version, VERSION_LEN),
        kdf.u64(epoch),
    )


def recover3_info(user: UserRef, node_id: bytes, version: bytes, attempt_id: bytes) -> bytes:
    """HPKE ``info`` of Recover3's sealed reply: this user, node, version and attempt."""
    return kdf.tuple_hash(
        kdf.LABEL_HPKE_RECOVER3,
        user.tenant.encode("utf-8"),
        user.user_id.encode("utf-8"),
        _fixed(node_id, NODE_ID_LEN),
        _fixed(version, VERSION_LEN),
        _fixed(attempt_id, 16),
    )


def _fixed(value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise ValueError(f"expected {length} bytes, got {len(value)}")
    return value
