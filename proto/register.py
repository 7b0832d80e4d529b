"""Registration (docs/protocol.md §3), one function per step, client side then node side.

Client: :func:`registration_epoch` (after Register1) → :func:`new_version` and Argon2id
(``kdf.stretch_password``, kept outside so async callers can run it in a thread) →
:func:`prepare_registration` (the per-node Register2 requests) → Register3 to the nodes that
acknowledged. Node: :func:`node_register2` stores the pending version, :func:`node_register3`
commits it. The old committed version stays in force until the new one is committed, so an
interrupted password change never strands the secret (§3).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pakr.proto import kdf, oprf, seal, shamir
from pakr.proto.errors import ConfigError, ErrorKind, NodeRefusal, WeakParameters
from pakr.proto.group import Element
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import (
    DEFAULT_MAX_GUESSES,
    MAX_EPOCH,
    MAX_GUESSES_LIMIT,
    VERSION_LEN,
    NodeRef,
    Register2,
    UserRef,
    UserStatus,
)
from pakr.proto.policy import VersionPolicy, sign_oprf_key, verify_oprf_key_signature
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.records import ShareMaterial, UserRecord, VersionRecord

# --------------------------------------------------------------------------- client side


EPOCH_JUMP_LIMIT = 2**20
"""How far past the epochs already held a new epoch may go (issue 12, finding 4).

A node refuses a Register2 or Delete whose epoch exceeds its own highest epoch by more than
this, and the client never adopts an epoch reported beyond this bound above what enough other
nodes report (:func:`registration_epoch`). Epochs normally advance by one per operation, so
the bound never bites an honest cluster, while one stolen token or one lying node can advance
a user's epoch by at most 2^20 per operation: exhausting the 2^64 epoch space would take 2^44
of them."""


def registration_epoch(statuses: Iterable[UserStatus], *, tolerate: int = 1) -> int:
    """Register1 → the new registration's epoch: 1 + the highest epoch reported by a node
    that is corroborated.

    Up to ``tolerate`` nodes (the client passes max(1, n - t)) may lie: an epoch is only
    adopted if it is at most :data:`EPOCH_JUMP_LIMIT` above the ``tolerate + 1``-th highest
    reported epoch, so at least one node outside any ``tolerate`` liars vouches for the range.
    A node reporting more (a lie, or an epoch pushed up by a stolen token before nodes bounded
    jumps) refuses this registration as stale; with r = n that blocks writes while it
    misbehaves, and never after it is repaired.
    """
    reported = sorted((s.highest_epoch for s in statuses), reverse=True)
    reference = reported[tolerate] if len(reported) > tolerate else 0
    bound = reference + EPOCH_JUMP_LIMIT
    highest = max((epoch for epoch in reported if epoch <= bound), default=0)
    if highest >= MAX_EPOCH:
        raise ConfigError("epoch space exhausted for this user; delete is impossible too")
    return highest + 1


def check_epoch_jump(held: int, epoch: int) -> None:
    """Node side of :data:`EPOCH_JUMP_LIMIT`: refuse an epoch too far past the node's own."""
    if epoch > held + EPOCH_JUMP_LIMIT:
        raise NodeRefusal(
            ErrorKind.INVALID_REQUEST,
            f"epoch {epoch} jumps more than 2^20 past this node's epoch {held};"
            " register again from Register1",
        )


def new_version(rng: Randomness = SYSTEM) -> bytes:
    """A fresh random 16-byte version id (the Argon2 salt and the AEAD key depend on it)."""
    return rng.bytes(VERSION_LEN)


def check_registration_args(secret: bytes, max_guesses: int) -> None:
    """Reject arguments the nodes would refuse, before any work or traffic."""
    if len(secret) > seal.MAX_SECRET_LEN:
        raise ConfigError(
            f"secret is {len(secret)} bytes; pakr stores at most {seal.MAX_SECRET_LEN}"
            " (store a key here and encrypt larger data with it)"
        )
    if not 1 <= max_guesses <= MAX_GUESSES_LIMIT:
        raise ConfigError(f"max_guesses must be 1..{MAX_GUESSES_LIMIT}, got {max_guesses}")


@dataclass(frozen=True, slots=True)
class RegistrationPlan:
    """The Register2 request for every node of the configuration."""

    version: bytes
    epoch: int
    requests: Mapping[bytes, Register2] = field(repr=False)


def prepare_registration(
    *,
    user: UserRef,
    nodes: Sequence[NodeRef],
    threshold: int,
    version: bytes,
    epoch: int,
    expected: Mapping[bytes, bytes | None],
    access_key: bytes,
    encryption_key_seed: bytes,
    secret: bytes,
    argon2: Argon2Params,
    max_guesses: int = DEFAULT_MAX_GUESSES,
    rng: Randomness = SYSTEM,
) -> RegistrationPlan:
    """Step 2 of §3: share a fresh OPRF key and encryption scalar, build each Register2.

    ``access_key`` and ``encryption_key_seed`` are the halves of Argon2id(password); the
    root OPRF key ``k``, the scalar ``s`` and the one-time signing key never leave this
    function.
    """
    check_registration_args(secret, max_guesses)
    policy = VersionPolicy(max_guesses=max_guesses, argon2=argon2)
    indices = [node.index for node in nodes]
    k = rng.scalar()
    k_shares = shamir.split(k, threshold, indices, rand=rng.scalar)
    signing_key = Ed25519PrivateKey.from_private_bytes(rng.bytes(32))
    verifying_key = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    oprf_output = oprf.evaluate(k, access_key)
    unlock_key = kdf.unlock_key(oprf_output)
    commitment = kdf.commitment(oprf_output, access_key)

    s = rng.scalar()
    s_shares = shamir.split(s, threshold, indices, rand=rng.scalar)
    encryption_key = kdf.encryption_key(encryption_key_seed, s.encoded)
    encrypted = seal.encrypt_secret(
        encryption_key, secret, kdf.secret_ad(user.tenant, user.user_id, version)
    )

    requests: dict[bytes, Register2] = {}
    for node in nodes:
        k_i = k_shares[node.index]
        public_share = Element.base_mult(k_i)
        s_i = s_shares[node.index]
        requests[node.node_id] = Register2(
            version=version,
            epoch=epoch,
            expected=expected.get(node.node_id),
            oprf_key_share=k_i,
            oprf_public_share=public_share,
            oprf_key_signature=sign_oprf_key(
                signing_key,
                user=user,
                node=node,
                version=version,
                epoch=epoch,
                public_share=public_share,
                policy=policy,
            ),
            verifying_key=verifying_key,
            commitment=commitment,
            unlock_tag=kdf.unlock_tag(unlock_key, node.node_id),
            secret_share=s_i,
            encrypted_secret=encrypted,
            secret_commitment=kdf.secret_commitment(
                unlock_key, node.node_id, s_i.encoded, encrypted
            ),
            max_guesses=max_guesses,
            argon2=argon2,
        )
    return RegistrationPlan(version=version, epoch=epoch, requests=requests)


# --------------------------------------------------------------------------- node side


def _same_registration(record: VersionRecord, request: Register2) -> bool:
    """Whether ``request`` is a retry of the registration that produced ``record``."""
    shares = record.shares
    return (
        shares is not None
        and record.epoch == request.epoch
        and hmac.compare_digest(shares.oprf_key_share.encoded, request.oprf_key_share.encoded)
        and hmac.compare_digest(shares.secret_share.encoded, request.secret_share.encoded)
        and hmac.compare_digest(shares.unlock_tag, request.unlock_tag)
        and shares.encrypted_secret == request.encrypted_secret
        and record.commitment == request.commitment
        and record.secret_commitment == request.secret_commitment
        and record.oprf_key_signature == request.oprf_key_signature
        and record.max_guesses == request.max_guesses
        and record.argon2 == request.argon2
    )


def check_register2(request: Register2, *, user: UserRef, node: NodeRef) -> None:
    """The stateless checks of a Register2 (``NodeRefusal`` INVALID_REQUEST): the public
    share is k_i·G, its signature verifies for this node and policy, max_guesses and the
    Argon2id parameters are in range.

    :func:`node_register2` runs them first; the servicer also runs them before it spends the
    request's single-use token, so a request refused for bad input leaves the token to its
    good retry (issue 12, finding 5)."""
    if Element.base_mult(request.oprf_key_share) != request.oprf_public_share:
        raise NodeRefusal(ErrorKind.INVALID_REQUEST, "oprf_public_share is not k_i·G")
    if not verify_oprf_key_signature(
        user=user,
        node=node,
        version=request.version,
        epoch=request.epoch,
        public_share=request.oprf_public_share,
        policy=VersionPolicy(max_guesses=request.max_guesses, argon2=request.argon2),
        signature=request.oprf_key_signature,
        verifying_key=request.verifying_key,
    ):
        raise NodeRefusal(
            ErrorKind.INVALID_REQUEST,
            "oprf_key_signature does not verify for this node's id, index and policy",
        )
    if not 1 <= request.max_guesses <= MAX_GUESSES_LIMIT:
        raise NodeRefusal(ErrorKind.INVALID_REQUEST, f"max_guesses must be 1..{MAX_GUESSES_LIMIT}")
    try:
        # The SDK refuses to recover with parameters outside these bounds, so storing them
        # would keep a registration nobody can ever recover.
        request.argon2.check()
    except WeakParameters as exc:
        raise NodeRefusal(
            ErrorKind.INVALID_REQUEST, f"{exc}; register again within bounds"
        ) from exc


def node_register2(
    current: UserRecord | None,
    request: Register2,
    *,
    user: UserRef,
    node: NodeRef,
    now: float,
) -> UserRecord | None:
    """Register2 on a node: the new user record, or ``None`` for an identical retry.

    Refuses (``NodeRefusal``) a request whose public share or signature does not check out
    (INVALID_REQUEST), whose epoch is not above every epoch the node holds, or whose
    ``expected`` is not this node's committed version (CONFLICT: a concurrent registration).
    The committed version is never touched here.
    """
    check_register2(request, user=user, node=node)
    state = current or UserRecord()
    held = state.version(request.version)
    if held is not None:
        if _same_registration(held, request):
            return None
        raise NodeRefusal(ErrorKind.CONFLICT, "version already held with different contents")
    check_epoch_jump(state.highest_epoch, request.epoch)
    if request.epoch <= state.highest_epoch:
        raise NodeRefusal(
            ErrorKind.CONFLICT,
            f"epoch {request.epoch} is not above this node's epoch {state.highest_epoch};"
            " start the registration over",
        )
    committed_version = state.committed.version if state.committed else None
    if committed_version != request.expected:
        raise NodeRefusal(
            ErrorKind.CONFLICT,
            "this node's committed version changed since Register1; start over",
        )
    record = VersionRecord(
        version=request.version,
        epoch=request.epoch,
        argon2=request.argon2,
        max_guesses=request.max_guesses,
        guess_count=0,
        shares=ShareMaterial(
            oprf_key_share=request.oprf_key_share,
            secret_share=request.secret_share,
            unlock_tag=request.unlock_tag,
            encrypted_secret=request.encrypted_secret,
        ),
        oprf_public_share=request.oprf_public_share,
        oprf_key_signature=request.oprf_key_signature,
        verifying_key=request.verifying_key,
        commitment=request.commitment,
        secret_commitment=request.secret_commitment,
        created_at=now,
    )
    return replace(state, pending=record)


def node_register3(current: UserRecord | None, version: bytes) -> UserRecord | None:
    """Register3 on a node: commit the pending version; ``None`` when already committed.

    The committed record replaces the older committed one atomically (the store writes the
    whole user record in one transaction). The version keeps its guess count: committing
    never resets it, so replaying commits buys an attacker nothing.
    """
    state = current or UserRecord()
    if state.committed is not None and state.committed.version == version:
        return None
    if state.pending is None or state.pending.version != version:
        raise NodeRefusal(
            ErrorKind.CONFLICT, "version is not this node's pending version; nothing committed"
        )
    return replace(state, committed=state.pending, pending=None)
