"""Delete (docs/protocol.md §5): every version of the user becomes a tombstone at a new epoch.

Client: :func:`delete_epoch` after a Register1 round, then Delete to all nodes; success
needs ``register_threshold`` acknowledgements. Node: :func:`node_delete`. The tombstone's
epoch is above every version any node reported, so a stale node that missed the delete can
never bring the secret back: recovery sees ≥ t tombstones newer than its version.
"""

from __future__ import annotations

from collections.abc import Iterable

from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.messages import UserStatus
from pakr.proto.records import UserRecord
from pakr.proto.register import check_epoch_jump, registration_epoch


def delete_epoch(statuses: Iterable[UserStatus], *, tolerate: int = 1) -> int:
    """The tombstone's epoch: 1 + the highest corroborated epoch (as for a register)."""
    return registration_epoch(statuses, tolerate=tolerate)


def node_delete(current: UserRecord | None, epoch: int) -> UserRecord | None:
    """Delete on a node: the tombstoned record, or ``None`` when already deleted (a retry).

    A version newer than the tombstone (a registration that raced ahead) is a CONFLICT:
    the client starts over from Register1.
    """
    state = current or UserRecord()
    if state.committed is None and state.pending is None and state.tombstone_epoch >= epoch:
        return None
    check_epoch_jump(state.highest_epoch, epoch)
    for record in (state.committed, state.pending):
        if record is not None and record.epoch >= epoch:
            raise NodeRefusal(
                ErrorKind.CONFLICT,
                "a newer registration exists on this node; delete again from the start",
            )
    return UserRecord(
        committed=None, pending=None, tombstone_epoch=max(epoch, state.tombstone_epoch)
    )
