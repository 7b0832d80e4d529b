"""Issue 12 finding 4: one stolen token must not brick a user (a real node process).

Before the fix a single unused token sent as ``Delete(epoch = 2^64 - 1)`` made the node keep
the maximum epoch and refuse every later registration or delete ("epoch space exhausted").
Now the node refuses any epoch more than ``EPOCH_JUMP_LIMIT`` past its own, changing nothing.
"""

from __future__ import annotations

import pytest

from pakr.proto.errors import ErrorKind
from pakr.proto.messages import UserRef
from pakr.proto.register import EPOCH_JUMP_LIMIT
from pakr.proto.v1 import node_pb2 as pb
from tests.node.conftest import RunningNode, refusal_of
from tests.node.node_helpers import make_registration
from tests.node.test_servicer import registered

MAX_U64 = 2**64 - 1


@pytest.mark.parametrize("epoch", [MAX_U64, 1 + 1 + EPOCH_JUMP_LIMIT])
def test_stolen_token_delete_far_ahead_is_refused(node: RunningNode, epoch: int) -> None:
    user = UserRef("acme", f"stolen-{epoch % 1000}")
    client, reg = registered(node, user)  # epoch 1
    before = node.dump()
    error = client.refused("Delete", pb.DeleteRequest(header=client.header(), epoch=epoch))
    assert refusal_of(error).kind is ErrorKind.INVALID_REQUEST
    assert node.dump() == before
    # the user is not bricked: a new registration at the next epoch is accepted
    newer = make_registration(user=user, node=node.ref, epoch=2, expected=reg.version)
    client.register(newer)
    assert client.status().committed.epoch == 2


def test_register2_far_ahead_is_refused_but_the_limit_is_accepted(node: RunningNode) -> None:
    user = UserRef("acme", "jumper")
    client, reg = registered(node, user)
    far = make_registration(
        user=user, node=node.ref, epoch=2 + EPOCH_JUMP_LIMIT, expected=reg.version
    )

    before = node.dump()
    error = client.refused("Register2", node.register2_pb(client.header(), far.request))
    assert refusal_of(error).kind is ErrorKind.INVALID_REQUEST
    assert node.dump() == before
    edge = make_registration(
        user=user, node=node.ref, epoch=1 + EPOCH_JUMP_LIMIT, expected=reg.version
    )
    client.register(edge)
    assert client.status().committed.epoch == 1 + EPOCH_JUMP_LIMIT
