"""Pure test support for the security properties: a registered world and an offline attacker.

``register_world`` runs the real client-side registration step (``prepare_registration``)
for n nodes and keeps every node's Register2 request: that is exactly what a node stores
(``k_i``, ``s_i``, ``unlock_tag_i``, the ciphertext, the commitments, ``K_i``, ``sig_i``,
``vk_v``), unsealed, i.e. what an attacker who holds a node's database *and* its data key has.

``offline_attack`` is the strongest password test we know how to build from a set of
compromised nodes' material: interpolate ``k`` and ``s`` from the shares it holds, evaluate
the OPRF on the candidate's access key, and check every verifier a node stores (the
commitment, each unlock tag, each secret commitment, the AEAD tag of the secret). With t
shares it recognises the right password (the control that shows the attacker is not a
strawman); with t - 1 shares it must say the same thing for every candidate.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pakr.proto import kdf, oprf, seal, shamir
from pakr.proto.errors import MalformedMessage
from pakr.proto.kdf import DEV_ARGON2, Argon2Params
from pakr.proto.messages import DEFAULT_MAX_GUESSES, NodeRef, Register2, UserRef
from pakr.proto.randomness import SYSTEM, Randomness
from pakr.proto.register import prepare_registration

USER = UserRef("acme", "alice@example.com")

Stretch = Callable[[bytes], tuple[bytes, bytes]]


@dataclass(frozen=True)
class World:
    """One registration of ``password`` → ``secret`` on ``n`` nodes with threshold ``t``."""

    user: UserRef
    nodes: tuple[NodeRef, ...]
    threshold: int
    version: bytes
    epoch: int
    params: Argon2Params
    requests: Mapping[bytes, Register2] = field(repr=False)
    password: bytes = field(repr=False)
    secret: bytes = field(repr=False)

    def stretch(self, password: bytes) -> tuple[bytes, bytes]:
        """The real password stretching for this world's user, version and parameters."""
        return kdf.stretch_password(
            password, self.user.tenant, self.user.user_id, self.version, self.params
        )

    def view(self, nodes: Sequence[NodeRef]) -> dict[NodeRef, Register2]:
        """What the given nodes store for the user (their DB rows, unsealed)."""
        return {node: self.requests[node.node_id] for node in nodes}


def make_nodes(n: int) -> tuple[NodeRef, ...]:
    return tuple(NodeRef(node_id=os.urandom(16), index=i + 1) for i in range(n))


def register_world(
    n: int,
    t: int,
    password: bytes,
    secret: bytes,
    *,
    params: Argon2Params = DEV_ARGON2,
    sharing_threshold: int | None = None,
    user: UserRef = USER,
    nodes: tuple[NodeRef, ...] | None = None,
    version: bytes | None = None,
    rng: Randomness = SYSTEM,
    max_guesses: int = DEFAULT_MAX_GUESSES,
) -> World:
    """Register through the real client step; ``sharing_threshold`` lets a control test
    build a deliberately broken registration (shares of a lower degree than ``t`` needs)."""
    nodes = nodes or make_nodes(n)
    version = version or os.urandom(16)
    access_key, seed = kdf.stretch_password(password, user.tenant, user.user_id, version, params)
    plan = prepare_registration(
        user=user,
        nodes=nodes,
        threshold=sharing_threshold or t,
        version=version,
        epoch=1,
        expected={},
        access_key=access_key,
        encryption_key_seed=seed,
        secret=secret,
        argon2=params,
        rng=rng,
        max_guesses=max_guesses,
    )
    return World(
        user=user,
        nodes=nodes,
        threshold=t,
        version=version,
        epoch=1,
        params=params,
        requests=plan.requests,
        password=password,
        secret=secret,
    )


@dataclass(frozen=True)
class AttackResult:
    """Which stored verifiers accepted the candidate (all False = no information)."""

    commitment: bool
    unlock_tags: bool
    secret_commitments: bool
    decrypts: bool

    @property
    def accepted(self) -> bool:
        return self.commitment or self.unlock_tags or self.secret_commitments or self.decrypts


def offline_attack(
    world: World,
    view: Mapping[NodeRef, Register2],
    keys: tuple[bytes, bytes],
) -> AttackResult:
    """Test one candidate (given as its stretched ``(access_key, seed)``) offline against the
    material of the nodes in ``view``: the attacker's best use of what it holds."""
    access_key, seed = keys
    any_request = next(iter(view.values()))
    k_shares = {node.index: req.oprf_key_share for node, req in view.items()}
    s_shares = {node.index: req.secret_share for node, req in view.items()}
    # Interpolating over the indices held is the attacker's best estimate of k and s: exact
    # when it holds ≥ t shares, a value independent of k (resp. s) when it holds fewer.
    k_hat = shamir.reconstruct(k_shares, len(k_shares))
    s_hat = shamir.reconstruct(s_shares, len(s_shares))
    output = oprf.evaluate(k_hat, access_key)
    unlock_key = kdf.unlock_key(output)
    commitment_ok = hmac.compare_digest(kdf.commitment(output, access_key), any_request.commitment)
    tags_ok = all(
        hmac.compare_digest(kdf.unlock_tag(unlock_key, node.node_id), req.unlock_tag)
        for node, req in view.items()
    )
    commitments_ok = all(
        hmac.compare_digest(
            kdf.secret_commitment(
                unlock_key, node.node_id, req.secret_share.encoded, req.encrypted_secret
            ),
            req.secret_commitment,
        )
        for node, req in view.items()
    )
    try:
        seal.decrypt_secret(
            kdf.encryption_key(seed, s_hat.encoded),
            any_request.encrypted_secret,
            kdf.secret_ad(world.user.tenant, world.user.user_id, world.version),
        )
        decrypts = True
    except MalformedMessage:
        decrypts = False
    return AttackResult(commitment_ok, tags_ok, commitments_ok, decrypts)
