"""ResetGuesses on a real node (docs/protocol.md §4a): only a fresh nonce this node issued for the
user, once, with a proof under this node's unlock tag for the version it holds, resets the
count. Every refusal is typed and leaves the data tables byte-identical (no count reset).
"""

from __future__ import annotations

import os

import pytest

from pakr.proto import kdf, wire
from pakr.proto.errors import ErrorKind
from pakr.proto.messages import ResetGuesses
from pakr.proto.reset import NONCE_TTL_SECONDS
from pakr.proto.v1 import node_pb2 as pb
from tests.node.conftest import RunningNode, refusal_of
from tests.node.node_helpers import OTHER_USER, USER, Registration, attempt, unlock
from tests.node.test_servicer import Client, registered

pytestmark = pytest.mark.timeout(120)


def unlock_key(client: Client, reg: Registration) -> bytes:
    """The unlock key of ``reg`` (spends one guess: a Recover2 without its Recover3)."""
    att = attempt(reg)
    reply = client.call("Recover2", wire.recover2_to_pb(client.header(reg.user), att.request))
    return unlock(att, wire.recover2_reply_from_pb(reply)).unlock_key


def nonce(client: Client) -> bytes:
    reply = client.call("Recover1", pb.Recover1Request(header=client.header()))
    assert len(reply.reset_nonce) == 40
    return bytes(reply.reset_nonce)


def reset(version: bytes, nonce_: bytes, key: bytes, node_id: bytes) -> pb.ResetGuessesRequest:
    proof = kdf.reset_proof(kdf.unlock_tag(key, node_id), version, nonce_)
    request = ResetGuesses(version=version, nonce=nonce_, proof=proof)
    return wire.reset_to_pb(wire.header_to_pb(os.urandom(16), USER), request)


def remaining(client: Client) -> int:
    return int(client.status().committed.guesses_remaining)


def refused(client: Client, request: pb.ResetGuessesRequest, token: object = True) -> ErrorKind:
    before = client.node.dump()
    error = client.refused("ResetGuesses", request, token)  # type: ignore[arg-type]
    assert client.node.dump() == before
    return refusal_of(error).kind


def test_reset_after_a_login_elsewhere_and_every_refusal(node: RunningNode) -> None:
    client, reg = registered(node, max_guesses=5)
    client.wrong_guess(reg)
    key = unlock_key(client, reg)
    assert remaining(client) == 3
    ref = node.ref

    fresh = nonce(client)
    good = reset(reg.version, fresh, key, ref.node_id)
    assert refused(client, good, token=None) is ErrorKind.INVALID_AUTH
    other_node = reset(reg.version, fresh, key, os.urandom(16))
    assert refused(client, other_node) is ErrorKind.BAD_UNLOCK_TAG
    wrong_key = reset(reg.version, fresh, os.urandom(32), ref.node_id)
    assert refused(client, wrong_key) is ErrorKind.BAD_UNLOCK_TAG
    forged = reset(reg.version, fresh[:-1] + bytes([fresh[-1] ^ 1]), key, ref.node_id)
    assert refused(client, forged) is ErrorKind.STALE_ATTEMPT
    other_client = Client(node, OTHER_USER)
    foreign = reset(reg.version, nonce(other_client), key, ref.node_id)  # another user's nonce
    assert refused(client, foreign) is ErrorKind.STALE_ATTEMPT
    assert remaining(client) == 3

    client.call("ResetGuesses", good)
    assert remaining(client) == 5
    client.wrong_guess(reg)
    assert refused(client, good) is ErrorKind.STALE_ATTEMPT  # replayed nonce
    assert remaining(client) == 4
    audit = client.call("ReadAudit", pb.ReadAuditRequest(header=client.header(), limit=100))
    assert [e.op for e in audit.entries].count("guesses_reset") == 1


def test_expired_nonce_resets_nothing(node: RunningNode) -> None:
    client, reg = registered(node)
    key = unlock_key(client, reg)
    request = reset(reg.version, nonce(client), key, node.ref.node_id)
    node.clock.offset += NONCE_TTL_SECONDS + 1
    assert refused(client, request) is ErrorKind.STALE_ATTEMPT
    assert remaining(client) == 9


def test_proof_for_an_older_version_resets_nothing(node: RunningNode) -> None:
    from tests.node.node_helpers import make_registration

    client, old = registered(node)
    old_key = unlock_key(client, old)
    new = make_registration(node=node.ref, epoch=2, expected=old.version)
    client.register(new)
    client.wrong_guess(new)
    assert remaining(client) == 9
    gone = reset(old.version, nonce(client), old_key, node.ref.node_id)
    assert refused(client, gone) is ErrorKind.NOT_REGISTERED
    old_proof_new_name = reset(new.version, nonce(client), old_key, node.ref.node_id)
    assert refused(client, old_proof_new_name) is ErrorKind.BAD_UNLOCK_TAG
    assert remaining(client) == 9
