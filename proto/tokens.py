"""Access tokens (docs/protocol.md §2): EdDSA JWTs a tenant's backend mints, one per node.

A token names the tenant (``iss``, matching the ``kid`` prefix), the user (``sub``), **one**
node (``aud`` = that node's id in hex, so a node cannot replay a client's token to its peers)
and a scope. Nodes pin the algorithm to EdDSA and know each tenant's keys by ``kid``
("<tenant>:<n>"), so keys rotate by adding ``<tenant>:<n+1>`` before retiring ``<tenant>:<n>``.

Key files are small JSON documents (also used for the operator's manifest-signing key) written
with mode 0600; their ``repr`` never shows the private key.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pakr.proto import base64url
from pakr.proto.errors import ConfigError, InvalidAuth
from pakr.proto.files import create_private_file
from pakr.proto.messages import UserRef

MAX_TOKEN_BYTES = 1000
LEEWAY_SECONDS = 5
MAX_LIFETIME_SECONDS = 24 * 3600
DEFAULT_TTL_SECONDS = 300
SCOPE_USER = "user"  # a user's own RPCs
SCOPE_AUDIT = "audit"  # ReadAudit / ListVersions: a tenant's or a user's audit log
SCOPES = frozenset({SCOPE_USER, SCOPE_AUDIT})
DELETE_FRESHNESS_SECONDS = 300.0  # Delete's token must be issued this recently
MAX_JTI_LEN = 64
MAX_TENANT_BYTES = 64
MAX_USER_ID_BYTES = 128
_KEY_PREFIX = "ed25519:"
_KEY_FILE_FORMAT = "pakr-key/1"


def public_key_text(key: Ed25519PublicKey) -> str:
    """The text form of a public key used in configs and manifests: ``ed25519:<base64url>``."""
    return _KEY_PREFIX + base64url.encode(key.public_bytes_raw())


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Parse ``ed25519:<base64url of 32 bytes>``; ``ConfigError`` when it is anything else."""
    if not isinstance(text, str) or not text.startswith(_KEY_PREFIX):
        raise ConfigError("a public key must look like 'ed25519:<base64url>'")
    try:
        raw = base64url.decode(text[len(_KEY_PREFIX) :])
    except (ValueError, UnicodeEncodeError) as exc:
        raise ConfigError("a public key is not valid base64url") from exc
    if len(raw) != 32:
        raise ConfigError(f"an Ed25519 public key has 32 bytes, this one has {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def check_tenant_name(tenant: str) -> str:
    """Tenant names are 1..64 bytes of UTF-8 without ':' (it separates the key number)."""
    if not isinstance(tenant, str) or not tenant:
        raise ConfigError("a tenant name must be a non-empty string")
    if ":" in tenant or len(tenant.encode("utf-8")) > MAX_TENANT_BYTES:
        raise ConfigError(f"tenant name {tenant!r} must be 1..64 bytes and contain no ':'")
    return tenant


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 signing key with a name, stored as a JSON key file (mode 0600).

    ``name`` is the tenant for token keys and the cluster operator for manifest keys; ``number``
    distinguishes rotated keys. The private key is excluded from ``repr``.
    """

    name: str
    number: int
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls, name: str, number: int = 1) -> SigningKey:
        """A fresh random key."""
        return cls(name=name, number=number, private_key=Ed25519PrivateKey.generate())

    @property
    def kid(self) -> str:
        """The key id ``<name>:<number>`` carried in JWT headers and node configs."""
        return f"{self.name}:{self.number}"

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The verifying key."""
        return self.private_key.public_key()

    @property
    def public_key_text(self) -> str:
        """``ed25519:<base64url>``, the form nodes and manifests carry."""
        return public_key_text(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature over ``message``."""
        return self.private_key.sign(message)

    def to_document(self) -> dict[str, Any]:
        """The key file's JSON content (holds the private key: keep it 0600)."""
        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return {
            "format": _KEY_FILE_FORMAT,
            "name": self.name,
            "number": self.number,
            "kid": self.kid,
            "private_key": base64url.encode(raw),
            "public_key": self.public_key_text,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> SigningKey:
        """Parse a key file's JSON content, checking the public key matches the private one."""
        try:
            if doc.get("format") != _KEY_FILE_FORMAT:
                raise ConfigError(f"key file format must be {_KEY_FILE_FORMAT!r}")
            name = doc["name"]
            number = doc["number"]
            raw = base64url.decode(doc["private_key"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                "key file is malformed: expected name, number and private_key"
            ) from exc
        if not isinstance(name, str) or isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError("key file is malformed: name must be text, number an integer")
        if number < 1:
            raise ConfigError("key file is malformed: number must be >= 1")
        if len(raw) != 32:
            raise ConfigError("key file is malformed: private_key must be 32 bytes")
        key = cls(name=name, number=number, private_key=Ed25519PrivateKey.from_private_bytes(raw))
        if "public_key" in doc and doc["public_key"] != key.public_key_text:
            raise ConfigError("key file is inconsistent: public_key does not match private_key")
        return key

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the key file with mode 0600, refusing to overwrite an existing file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_document(), indent=2).encode("utf-8") + b"\n"
        if not create_private_file(target, data):
            raise ConfigError(f"{target} already exists; refusing to overwrite a key")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key file written by :meth:`save`."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(f"key file {path} is not JSON") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"key file {path} is not a JSON object")
        return cls.from_document(doc)


class TenantKey(SigningKey):
    """A tenant's token-signing key; ``name`` is the tenant."""

    @property
    def tenant(self) -> str:
        """The tenant this key mints tokens for."""
        return self.name

    @classmethod
    def generate(cls, name: str, number: int = 1) -> TenantKey:
        """A fresh random key for tenant ``name``."""
        check_tenant_name(name)
        return cls(name=name, number=number, private_key=Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TenantKey:
        """Read a tenant key file."""
        key = SigningKey.load(path)
        check_tenant_name(key.name)
        return cls(name=key.name, number=key.number, private_key=key.private_key)


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of an access token."""

    tenant: str
    user_id: str
    audience: str
    scope: str
    iat: int
    nbf: int
    exp: int
    jti: str


def issue_token(
    key: SigningKey,
    *,
    user_id: str,
    audience: str,
    scope: str = "user",
    ttl: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
    jti: str | None = None,
) -> str:
    """Mint a token for ``user_id`` valid at one node (``audience`` = node id hex).

    This is what a tenant's backend does after its own login; ``pakr token issue`` and the
    SDK's dev token provider call it with a key file.
    """
    if scope not in SCOPES:
        raise ConfigError(f"scope must be one of {sorted(SCOPES)}, not {scope!r}")
    if not 1 <= ttl <= MAX_LIFETIME_SECONDS:
        raise ConfigError(f"token ttl must be 1..{MAX_LIFETIME_SECONDS} seconds, not {ttl}")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": key.name,
        "sub": user_id,
        "aud": audience,
        "scope": scope,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl,
        "jti": jti if jti is not None else base64url.encode(secrets.token_bytes(16)),
    }
    token = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})
    if len(token.encode("ascii")) > MAX_TOKEN_BYTES:
        raise ConfigError("the token would exceed 1,000 bytes: shorten the user id or tenant")
    return token


def _refuse(reason: str) -> InvalidAuth:
    return InvalidAuth(f"access token rejected: {reason}")


def verify_token(
    token: str,
    *,
    keys: Mapping[str, Ed25519PublicKey],
    audience: str,
    now: float,
) -> Claims:
    """Check a token's signature and claims for the node ``audience``; ``InvalidAuth`` if not.

    The caller still matches ``sub``/``iss`` against the request, the scope against the RPC,
    and keeps the ``jti`` replay cache; those need the request.
    """
    if not isinstance(token, str) or not token:
        raise _refuse("missing")
    if len(token.encode("utf-8", "replace")) > MAX_TOKEN_BYTES:
        raise _refuse("longer than 1,000 bytes")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _refuse("not a JWT") from exc
    if header.get("alg") != "EdDSA":
        raise _refuse("algorithm must be EdDSA")
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise _refuse("unknown signing key (kid); is the tenant's key in the node config?")
    try:
        claims = jwt.decode(
            token,
            keys[kid],
            algorithms=["EdDSA"],
            audience=audience,
            leeway=LEEWAY_SECONDS,
            options={
                "require": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise _refuse("issued for another node") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _refuse(f"missing claim {exc.claim}") from exc
    except jwt.PyJWTError as exc:
        raise _refuse("bad signature or malformed claims") from exc
    tenant = kid.rsplit(":", 1)[0]
    iss, sub, scope, jti = claims["iss"], claims["sub"], claims.get("scope"), claims["jti"]
    iat, nbf, exp = claims["iat"], claims["nbf"], claims["exp"]
    if claims["aud"] != audience:
        raise _refuse("must name exactly one node as audience")
    if iss != tenant:
        raise _refuse("issuer does not match the signing key's tenant")
    if not isinstance(sub, str) or not 1 <= len(sub.encode("utf-8")) <= MAX_USER_ID_BYTES:
        raise _refuse("subject must be a user id of 1..128 bytes")
    if scope not in SCOPES:
        raise _refuse("unknown scope")
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_LEN:
        raise _refuse("jti must be 1..64 characters")
    for name, value in (("iat", iat), ("nbf", nbf), ("exp", exp)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _refuse(f"{name} must be an integer")
    if exp - nbf > MAX_LIFETIME_SECONDS:
        raise _refuse("lifetime exceeds 24 hours")
    if now + LEEWAY_SECONDS < nbf:
        raise _refuse("not yet valid (check the clocks)")
    if now - LEEWAY_SECONDS >= exp:
        raise _refuse("expired")
    return Claims(
        tenant=tenant,
        user_id=sub,
        audience=audience,
        scope=scope,
        iat=iat,
        nbf=nbf,
        exp=exp,
        jti=jti,
    )


def check_claims(
    claims: Claims,
    user: UserRef,
    *,
    scope: str,
    now: float,
    fresh_within: float | None = None,
    any_user: bool = False,
) -> None:
    """Node: match verified ``claims`` against the request; ``InvalidAuth`` if they do not fit.

    ``user`` is the request header's; the token's tenant and ``sub`` must be its own (unless
    ``any_user`` and the header names no user: a whole tenant's audit read), its ``scope``
    the RPC's. ``fresh_within`` (Delete): issued that recently, not in the future, and not
    valid before it was issued, so the freshness window covers the token's whole validity.
    The ``jti`` replay check needs the node's memory and store: not here.
    """
    if claims.tenant != user.tenant:
        raise _refuse("issued by another tenant")
    if not (any_user and not user.user_id) and claims.user_id != user.user_id:
        raise _refuse("issued for another user")
    if claims.scope != scope:
        raise _refuse(f"scope must be {scope!r} for this call")
    if fresh_within is not None:
        if now - claims.iat > fresh_within + LEEWAY_SECONDS:
            raise _refuse(f"must be issued within {int(fresh_within)} s for this call")
        if claims.iat > now + LEEWAY_SECONDS:
            raise _refuse("issued in the future (check the clocks)")
        if claims.nbf < claims.iat - LEEWAY_SECONDS:
            raise _refuse("valid before it was issued (nbf < iat); mint a new token")
