"""Change password: recover with the old password, then register the secret under the new one.

Crash-safe through the two-phase registration: the old version stays committed (and the old
password keeps working) until r nodes have committed the new version. A crash in between
leaves the old password in force; calling ``change_password`` again is safe. The guess limit
of the recovered version (its own ``max_guesses``, from the policy signed with it and checked
on recovery; never another version's count) is kept unless a new one is given.
"""

from __future__ import annotations

from pakr._cluster import ClusterContext
from pakr._operations.recover import recover_outcome
from pakr._operations.register import register
from pakr.proto.messages import UserRef


async def change_password(
    ctx: ClusterContext,
    user: UserRef,
    old_password: bytes,
    new_password: bytes,
    *,
    max_guesses: int | None = None,
) -> None:
    """Re-register ``user``'s secret under ``new_password`` (needs the old one)."""
    recovered = await recover_outcome(ctx, user, old_password, fill=False)
    limit = max_guesses if max_guesses is not None else recovered.max_guesses
    await register(ctx, user, new_password, recovered.secret, max_guesses=limit)
