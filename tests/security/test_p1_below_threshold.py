"""Property 1 (docs/protocol.md §8): fewer than t nodes — their databases, data keys and traffic
together — learn nothing about the secret and cannot test a password guess offline.

The checks are concrete and fail if the property breaks:

* the strongest offline test we can build (``sec_pure.offline_attack``) gives the *same*
  answer (reject) for the right password and for wrong ones from any t - 1 nodes' material,
  while the same attack recognises the right password from t nodes (the control) and from
  t - 1 nodes when the sharing is deliberately one degree too low (the broken-build control);
* every candidate password completes the t - 1 shares into a whole, valid registration in
  which that candidate is the right password (so the shares rule no candidate out);
* the share material does not depend on the password at all;
* the traffic a compromised node sees is its own DB material applied to a blinded element;
* a stolen database file without the data key holds none of the secret-bearing values.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from pakr.node.store.sealing import Sealer
from pakr.node.store.sqlite import SqliteStore
from pakr.proto import kdf, oprf, shamir
from pakr.proto.choice import VersionChoice
from pakr.proto.counting import node_recover2
from pakr.proto.group import Element, Scalar
from pakr.proto.messages import NodeRef
from pakr.proto.randomness import DeterministicRandomness
from pakr.proto.recover import finish_recover2, start_recover2
from pakr.proto.register import prepare_registration
from tests.security.sec_pure import USER, World, make_nodes, offline_attack, register_world

RIGHT = b"correct horse battery staple"
WRONG = (b"correct horse battery stapler", b"hunter2", b"")
SECRET = b"\x07" * 32


def _subsets(world: World, size: int) -> list[tuple[NodeRef, ...]]:
    return list(itertools.combinations(world.nodes, size))


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
def test_t_minus_one_nodes_see_the_same_for_every_candidate(n: int, t: int) -> None:
    world = register_world(n, t, RIGHT, SECRET)
    candidates = {pw: world.stretch(pw) for pw in (RIGHT, *WRONG)}
    for subset in _subsets(world, t - 1):
        view = world.view(subset)
        results = {pw: offline_attack(world, view, keys) for pw, keys in candidates.items()}
        assert len(set(results.values())) == 1, f"{subset}: the view tells candidates apart"
        assert not results[RIGHT].accepted
    # Control: the same attack from t nodes recognises the right password and only it.
    for subset in _subsets(world, t):
        view = world.view(subset)
        right = offline_attack(world, view, candidates[RIGHT])
        assert right.commitment and right.unlock_tags and right.secret_commitments
        assert right.decrypts
        for pw in WRONG:
            assert not offline_attack(world, view, candidates[pw]).accepted


def test_attack_breaks_a_sharing_of_too_low_degree() -> None:
    """Broken-build control: if registration shared k and s with degree t - 2, t - 1 nodes
    could test guesses offline — the test above would then fail."""
    world = register_world(5, 3, RIGHT, SECRET, sharing_threshold=2)
    view = world.view(world.nodes[:2])
    assert offline_attack(world, view, world.stretch(RIGHT)).accepted
    assert not offline_attack(world, view, world.stretch(WRONG[0])).accepted


class _ScriptedRandomness:
    """Randomness whose scalars are chosen by the test (bytes stay random)."""

    def __init__(self, scalars: Sequence[Scalar]) -> None:
        self._scalars = list(scalars)

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def scalar(self) -> Scalar:
        return self._scalars.pop(0)


def _coefficients_through(points: dict[int, Scalar], degree: int) -> list[Scalar]:
    """Monomial coefficients c_0..c_degree of the polynomial through ``points`` (x → y)."""
    xs = list(points)
    assert len(xs) == degree + 1
    total = [Scalar.from_int(0)] * (degree + 1)
    for xi in xs:
        basis = [Scalar.from_int(1)]  # Π_{j≠i} (x - x_j) / (x_i - x_j), built up as a poly
        denominator = Scalar.from_int(1)
        for xj in xs:
            if xj == xi:
                continue
            shifted = [Scalar.from_int(0), *basis]  # x·basis
            for d, c in enumerate(basis):
                shifted[d] = shifted[d] - c * Scalar.from_int(xj)
            basis = shifted
            denominator = denominator * (Scalar.from_int(xi) - Scalar.from_int(xj))
        factor = points[xi] * denominator.invert()
        total = [a + b * factor for a, b in zip(total, basis, strict=True)]
    return total


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3)])
def test_every_candidate_completes_the_shares_into_a_valid_registration(n: int, t: int) -> None:
    """For any candidate password there are k, s (and a whole registration) that agree with
    the t - 1 nodes' shares and in which that candidate is the right password."""
    world = register_world(n, t, RIGHT, SECRET)
    held = world.nodes[: t - 1]
    view = world.view(held)
    for candidate in (RIGHT, *WRONG):
        k_alt, s_alt = Scalar.random(), Scalar.random()
        k_poly = _coefficients_through(
            {0: k_alt} | {node.index: view[node].oprf_key_share for node in held}, t - 1
        )
        s_poly = _coefficients_through(
            {0: s_alt} | {node.index: view[node].secret_share for node in held}, t - 1
        )
        access_key, seed = world.stretch(candidate)
        plan = prepare_registration(
            user=world.user,
            nodes=world.nodes,
            threshold=t,
            version=world.version,
            epoch=world.epoch,
            expected={},
            access_key=access_key,
            encryption_key_seed=seed,
            secret=os.urandom(32),
            argon2=world.params,
            rng=_ScriptedRandomness([*k_poly, *s_poly]),
        )
        for node in held:  # the compromised nodes' shares are exactly reproduced
            assert plan.requests[node.node_id].oprf_key_share == view[node].oprf_key_share
            assert plan.requests[node.node_id].secret_share == view[node].secret_share
            assert plan.requests[node.node_id].oprf_public_share == view[node].oprf_public_share
        alt = World(
            user=world.user,
            nodes=world.nodes,
            threshold=t,
            version=world.version,
            epoch=world.epoch,
            params=world.params,
            requests=plan.requests,
            password=candidate,
            secret=b"",
        )
        assert offline_attack(alt, alt.view(world.nodes[:t]), (access_key, seed)).accepted
        assert (
            shamir.reconstruct(
                {
                    node.index: plan.requests[node.node_id].oprf_key_share
                    for node in world.nodes[:t]
                },
                t,
            )
            == k_alt
        )


def test_share_material_does_not_depend_on_the_password() -> None:
    """Same randomness, different passwords: k_i, s_i, K_i, sig_i and vk_v are identical on
    every node; only MAC/AEAD outputs keyed by the OPRF output (which needs k) differ."""
    nodes = make_nodes(3)
    version = os.urandom(16)
    a = register_world(
        3, 2, RIGHT, SECRET, nodes=nodes, version=version, rng=DeterministicRandomness(b"x")
    )
    b = register_world(
        3, 2, WRONG[0], SECRET, nodes=nodes, version=version, rng=DeterministicRandomness(b"x")
    )
    for node in nodes:
        ra, rb = a.requests[node.node_id], b.requests[node.node_id]
        assert ra.oprf_key_share == rb.oprf_key_share
        assert ra.secret_share == rb.secret_share
        assert ra.oprf_public_share == rb.oprf_public_share
        assert ra.oprf_key_signature == rb.oprf_key_signature
        assert ra.verifying_key == rb.verifying_key
        assert ra.commitment != rb.commitment
        assert ra.unlock_tag != rb.unlock_tag
        assert ra.encrypted_secret != rb.encrypted_secret


def test_traffic_adds_nothing_beyond_the_database() -> None:
    """What a compromised node receives in a recovery is B (fresh and uniformly blinded for
    every attempt), Recover3's proof, which it can compute itself from its stored tag and the
    client's one-time reply key; what it sends is k_i·B and its own share. So t - 1 nodes'
    traffic gives no more than their databases."""
    world = register_world(3, 2, RIGHT, SECRET)
    access_key, seed = world.stretch(RIGHT)
    choice = VersionChoice(
        version=world.version,
        epoch=world.epoch,
        argon2=world.params,
        nodes=world.nodes,
        pending_nodes=(),
    )
    seen: list[Element] = []
    for _ in range(2):
        attempt = start_recover2(world.user, choice, access_key, seed)
        seen.append(attempt.blinded_element)
        replies = {}
        for node in world.nodes:
            req = world.requests[node.node_id]
            record_nonce = os.urandom(16)
            reply = _reply_from(world, node, attempt.request, record_nonce)
            assert reply.evaluated_element == attempt.blinded_element * req.oprf_key_share
            replies[node] = reply
        unlocked = finish_recover2(attempt, replies, threshold=2)
        for node, recover3 in unlocked.requests.items():
            stored_tag = world.requests[node.node_id].unlock_tag
            # ... and the client's fresh reply key, which the request carries in the clear.
            assert recover3.unlock_proof == kdf.unlock_proof(
                stored_tag, replies[node].nonce, attempt.attempt_id, recover3.reply_key
            )
    # B is not the unblinded H(access_key), and two attempts of one password are unlinkable.
    assert seen[0] != seen[1]
    assert oprf.hash_to_group(access_key) not in seen


def _reply_from(world: World, node: NodeRef, request, nonce: bytes):  # type: ignore[no-untyped-def]
    from pakr.proto.records import ShareMaterial, VersionRecord

    req = world.requests[node.node_id]
    record = VersionRecord(
        version=req.version,
        epoch=req.epoch,
        argon2=req.argon2,
        max_guesses=req.max_guesses,
        guess_count=1,
        shares=ShareMaterial(
            oprf_key_share=req.oprf_key_share,
            secret_share=req.secret_share,
            unlock_tag=req.unlock_tag,
            encrypted_secret=req.encrypted_secret,
        ),
        oprf_public_share=req.oprf_public_share,
        oprf_key_signature=req.oprf_key_signature,
        verifying_key=req.verifying_key,
        commitment=req.commitment,
        secret_commitment=req.secret_commitment,
        created_at=0.0,
    )
    return node_recover2(record, request, nonce=nonce)


async def test_stolen_database_file_alone_reveals_no_secret_material(tmp_path: Path) -> None:
    """A copied SQLite file (and its WAL) holds k_i, s_i and the unlock tag only sealed: none
    appears in the bytes, and another data key cannot unseal them."""
    world = register_world(3, 2, RIGHT, SECRET)
    node = world.nodes[0]
    req = world.requests[node.node_id]
    path = tmp_path / "node.db"
    store = SqliteStore(path, Sealer(os.urandom(32)))
    try:
        await store.migrate()
        await store.register_pending(USER, req, node=node, now=1.0, peer="test")
        await store.commit(USER, req.version, now=2.0, peer="test")
        stolen = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    finally:
        await store.close()
    for value in (req.oprf_key_share.encoded, req.secret_share.encoded, req.unlock_tag):
        assert value not in stolen
    # The rows are there (the copy is real), sealed: a thief's own key cannot open them.
    with sqlite3.connect(path) as conn:
        sealed, generation, wrapped = conn.execute(
            "SELECT sealed_oprf_key_share, key_generation, wrapped_key FROM versions"
        ).fetchone()
    assert sealed is not None and len(sealed) > 32
    thief = Sealer(os.urandom(32))
    thief.keys.roll(1.0)  # the thief's own generation 1: not the node's
    with pytest.raises(Exception, match="wrong key"):
        thief.open_version_key(USER, req.version, generation, bytes(wrapped))
