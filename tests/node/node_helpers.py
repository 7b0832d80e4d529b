"""Shared test helpers: a one-node registration and recovery driven by the pure client steps.

The access key and encryption-key seed stand in for Argon2id's output (random bytes), so
store and servicer tests pay no Argon2 cost; a "wrong password" is another access key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pakr.proto import kdf
from pakr.proto.choice import VersionChoice
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.messages import NodeRef, Recover2, Recover2Reply, Register2, UserRef
from pakr.proto.recover import RecoveryAttempt, UnlockedAttempt, finish_recover2, start_recover2
from pakr.proto.register import new_version, prepare_registration

USER = UserRef("acme", "alice@example.com")
OTHER_USER = UserRef("acme", "bob@example.com")
ANY_REPLY_KEY = HpkePrivateKey.from_seed(bytes(32)).public.encoded
"""A well-formed Recover3 reply key for requests that must fail for another reason."""
NODE = NodeRef(node_id=bytes.fromhex("00112233445566778899aabbccddeeff"), index=1)


@dataclass
class Registration:
    """One user's registration on one node (threshold 1), with its client-side keys."""

    user: UserRef
    node: NodeRef
    version: bytes
    epoch: int
    request: Register2
    access_key: bytes = field(repr=False)
    seed: bytes = field(repr=False)
    secret: bytes = field(repr=False)


def make_registration(
    *,
    user: UserRef = USER,
    node: NodeRef = NODE,
    epoch: int = 1,
    expected: bytes | None = None,
    max_guesses: int = 10,
    secret: bytes = b"the long-term secret",
    password: bytes | None = None,
    argon2: Argon2Params = DEV_ARGON2,
) -> Registration:
    """A Register2 request; with ``password`` the keys come from real Argon2id (DEV params)."""
    version = new_version()
    if password is None:
        access_key, seed = os.urandom(32), os.urandom(32)
    else:
        access_key, seed = kdf.stretch_password(
            password, user.tenant, user.user_id, version, DEV_ARGON2
        )
    plan = prepare_registration(
        user=user,
        nodes=[node],
        threshold=1,
        version=version,
        epoch=epoch,
        expected={node.node_id: expected},
        access_key=access_key,
        encryption_key_seed=seed,
        secret=secret,
        argon2=argon2,
        max_guesses=max_guesses,
    )
    return Registration(
        user=user,
        node=node,
        version=version,
        epoch=epoch,
        request=plan.requests[node.node_id],
        access_key=access_key,
        seed=seed,
        secret=secret,
    )


def attempt(reg: Registration, *, right: bool = True) -> RecoveryAttempt:
    """A Recover2 attempt with the right (or a wrong) access key."""
    choice = VersionChoice(
        version=reg.version,
        epoch=reg.epoch,
        argon2=DEV_ARGON2,
        nodes=(reg.node,),
        pending_nodes=(),
    )
    key = reg.access_key if right else os.urandom(32)
    return start_recover2(reg.user, choice, key, reg.seed)


def wrong_recover2(reg: Registration) -> Recover2:
    return attempt(reg, right=False).request


def unlock(att: RecoveryAttempt, reply: Recover2Reply) -> UnlockedAttempt:
    """finish_recover2 for the single node (raises InvalidPassword on a wrong key)."""
    return finish_recover2(att, {att.choice.nodes[0]: reply}, threshold=1)
