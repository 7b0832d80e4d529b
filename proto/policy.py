"""A registration's policy and the one-time key's signature over it (docs/protocol.md §3).

The client that registers a version signs, for every node, the node's public OPRF share
together with the version's policy: the guess limit and the Argon2id parameters. Nodes check
that signature before storing a Register2, and clients check it on every Recover2 reply they
combine, so the limit and the parameters a client acts on are the ones the registering
client chose, never numbers a node made up. This module is the single place that builds and
checks that signature.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from pakr.proto import kdf
from pakr.proto.group import Element
from pakr.proto.kdf import Argon2Params
from pakr.proto.messages import NodeRef, UserRef


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """What a version promises every client: its guess limit and Argon2id parameters."""

    max_guesses: int
    argon2: Argon2Params


def _statement(
    user: UserRef,
    node: NodeRef,
    version: bytes,
    epoch: int,
    public_share: Element,
    policy: VersionPolicy,
) -> bytes:
    return kdf.oprf_key_statement(
        user.tenant,
        user.user_id,
        version,
        epoch,
        node.node_id,
        node.index,
        public_share.encoded,
        policy.max_guesses,
        policy.argon2,
    )


def sign_oprf_key(
    signing_key: Ed25519PrivateKey,
    *,
    user: UserRef,
    node: NodeRef,
    version: bytes,
    epoch: int,
    public_share: Element,
    policy: VersionPolicy,
) -> bytes:
    """``sig_i``: the one-time key's signature over ``K_i``, the node's slot and the policy."""
    return signing_key.sign(_statement(user, node, version, epoch, public_share, policy))


def verify_oprf_key_signature(
    *,
    user: UserRef,
    node: NodeRef,
    version: bytes,
    epoch: int,
    public_share: Element,
    policy: VersionPolicy,
    signature: bytes,
    verifying_key: bytes,
) -> bool:
    """Whether ``signature`` binds this node's public share and ``policy`` to the version.

    Used by the node on Register2 and by the client on the Recover2 replies it combines: a
    node cannot substitute another key, index, version, guess limit or Argon2id parameters
    without the one-time registration key.
    """
    statement = _statement(user, node, version, epoch, public_share, policy)
    try:
        Ed25519PublicKey.from_public_bytes(verifying_key).verify(signature, statement)
    except (InvalidSignature, ValueError):
        return False
    return True
