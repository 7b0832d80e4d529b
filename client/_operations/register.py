"""Register (docs/protocol.md §3): Register1 → epoch → Argon2id → Register2 → Register3.

The new version is stored as *pending* on the nodes and committed only once
``register_threshold`` (r) nodes hold it, so an interrupted registration or password change
never strands the secret: the old version stays committed until the new one is. A
``Conflict`` (another registration for the same user raced ahead) starts over from Register1 a
bounded number of times.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pakr._cluster import ClusterContext
from pakr._fanout import is_transient
from pakr._operations.states import read_states
from pakr._passwords import stretch
from pakr._transport import NodeTransport
from pakr.proto.choice import choose_version
from pakr.proto.errors import (
    AlreadyRegistered,
    CommitIncomplete,
    Conflict,
    ErrorKind,
    InvalidAuth,
    InvalidPassword,
    NodeRefusal,
    NotRegistered,
    PakrError,
    UpgradeRequired,
)
from pakr.proto.messages import (
    DEFAULT_MAX_GUESSES,
    NodeRef,
    Register2,
    Register3,
    UserRef,
    UserStatus,
)
from pakr.proto.register import (
    check_registration_args,
    new_version,
    prepare_registration,
    registration_epoch,
)

log = logging.getLogger("pakr")

MAX_CONFLICT_RETRIES = 3
COMMIT_ROUNDS = 3

IfExists = Literal["refuse", "replace"]


@dataclass(frozen=True, slots=True)
class Registration:
    """What :meth:`pakr.Client.register` did: the new version, and the one it replaced.

    ``replaced`` is the hex id of the version that was registered before (``None`` for a new
    user); its secret cannot be recovered any more.
    """

    version: str
    replaced: str | None = None


async def commit(
    ctx: ClusterContext, user: UserRef, version: bytes, nodes: list[NodeRef], *, need: int
) -> set[NodeRef]:
    """Register3 at ``nodes`` until ``need`` committed, retrying the stragglers a few rounds.

    Returns the nodes that committed; raises ``CommitIncomplete`` when fewer than ``need``.
    """
    request = Register3(version=version)

    async def rpc(transport: NodeTransport, token: str, timeout: float) -> None:
        await transport.register3(user, token, request, timeout=timeout)

    committed: set[NodeRef] = set()
    errors: dict[NodeRef, PakrError] = {}
    todo = list(nodes)
    for _ in range(COMMIT_ROUNDS):
        result = await ctx.step(
            "register3", user, todo, rpc, need=need, wait_all=True, fresh_token=True
        )
        committed |= set(result.replies)
        errors = dict(result.errors)
        todo = [node for node in todo if node not in committed]
        if len(committed) >= need or not any(map(is_transient, errors.values())):
            break
    if len(committed) < need:
        why = "; ".join(
            f"{n.name}: {e}" for n, e in sorted(errors.items(), key=lambda i: i[0].index)
        )
        raise CommitIncomplete(
            f"only {len(committed)} of the {need} needed nodes committed the new registration"
            f" ({why}); the new password may or may not be in force: call register again"
            ' with if_exists="replace"'
        )
    return committed


async def register(
    ctx: ClusterContext,
    user: UserRef,
    password: bytes,
    secret: bytes,
    *,
    max_guesses: int | None,
    if_exists: IfExists = "replace",
) -> Registration:
    """Store ``secret`` under ``password`` for ``user``; returns the new version id.

    ``max_guesses=None`` keeps the policy of the currently committed version (used by
    ``change_password``), or the default when there is none. ``if_exists="refuse"`` raises
    ``AlreadyRegistered`` when the user has a secret (the public default; a password change
    and a migration replace on purpose).
    """
    if max_guesses is not None:
        check_registration_args(secret, max_guesses)
    if if_exists not in ("refuse", "replace"):
        raise ValueError(f'if_exists must be "refuse" or "replace", not {if_exists!r}')
    last_conflict: Conflict | None = None
    for _ in range(MAX_CONFLICT_RETRIES):
        try:
            return await register_once(
                ctx, user, password, secret, max_guesses, if_exists=if_exists
            )
        except Conflict as conflict:
            last_conflict = conflict
            log.info("register: a concurrent registration won the race; starting over")
    assert last_conflict is not None
    raise last_conflict


def registered_version(
    ctx: ClusterContext, user: UserRef, states: Mapping[NodeRef, UserStatus]
) -> tuple[bool, str | None]:
    """(whether ``user`` is registered, its version hex) by recovery's own rule.

    "Registered" means what recovery would find: a version held by t nodes (usable or
    locked out), decided by :func:`~pakr.proto.choice.choose_version`, so one node claiming
    a version cannot make a new user look registered. When the answers do not settle it the
    user counts as registered: a registration must never replace a secret by accident.
    """
    try:
        choice = choose_version(
            states, {}, threshold=ctx.threshold, node_count=ctx.node_count, user=user
        )
    except NotRegistered:
        return False, None
    except InvalidPassword:  # locked out: registered, though no password opens it any more
        held = Counter(s.committed.version for s in states.values() if s.committed is not None)
        top = held.most_common(1)
        return True, top[0][0].hex() if top else None
    except PakrError:
        return True, None
    return True, choice.version.hex()


async def register_once(
    ctx: ClusterContext,
    user: UserRef,
    password: bytes,
    secret: bytes,
    max_guesses: int | None,
    if_exists: IfExists = "replace",
    *,
    states: Mapping[NodeRef, UserStatus] | None = None,
) -> Registration:
    """One pass from Register1 to Register3; ``Conflict`` when a concurrent one interfered.

    ``states`` are Register1 answers the caller already holds (a fill checked them): every
    node's Register2 then expects exactly the committed version it reported there. The
    guard (``if_exists="refuse"``) is the public register's; a fill replaces on purpose.
    """
    r = ctx.register_threshold
    if states is None:
        states = (await read_states(ctx, user, step="register1", need=r)).require(r)
    registered, replaced = registered_version(ctx, user, states)
    if registered and if_exists == "refuse":
        what = f"a secret (version {replaced[:12]}…)" if replaced else "what may be a secret"
        raise AlreadyRegistered(
            f"{user.user_id!r} already has {what}; nothing was changed. To replace it (the old"
            ' secret is then lost) pass --replace (SDK: if_exists="replace")',
            replaced,
        )
    guesses = max_guesses if max_guesses is not None else current_policy(states)
    check_registration_args(secret, guesses)
    epoch = registration_epoch(states.values(), tolerate=max(1, ctx.node_count - ctx.threshold))
    version = new_version(ctx.rng)
    with ctx.phase("argon2"):
        access_key, seed = await stretch(password, user, version, ctx.argon2)
    plan = prepare_registration(
        user=user,
        nodes=ctx.nodes,
        threshold=ctx.threshold,
        version=version,
        epoch=epoch,
        expected={
            node.node_id: (status.committed.version if status.committed else None)
            for node, status in states.items()
        },
        access_key=access_key,
        encryption_key_seed=seed,
        secret=secret,
        argon2=ctx.argon2,
        max_guesses=guesses,
        rng=ctx.rng,
    )
    del access_key, seed
    requests: Mapping[bytes, Register2] = plan.requests

    async def store(transport: NodeTransport, token: str, timeout: float) -> None:
        await transport.register2(user, token, requests[transport.node.node_id], timeout=timeout)

    result = await ctx.step("register2", user, ctx.nodes, store, need=r, fresh_token=True)
    if len(result.replies) < r:
        failure = result.failure(r)
        if any(
            isinstance(e, NodeRefusal) and e.kind is ErrorKind.CONFLICT
            for e in result.errors.values()
        ) and not isinstance(failure, InvalidAuth | UpgradeRequired):
            raise Conflict("a concurrent registration for this user won the race; try again")
        if result.replies and not isinstance(failure, InvalidAuth | UpgradeRequired):
            raise CommitIncomplete(
                f"only {len(result.replies)} of the {r} needed nodes stored the new"
                f" registration ({failure}); it may or may not be in force: call register again"
                ' with if_exists="replace"'
            )
        raise failure
    acked = sorted(result.replies, key=lambda n: n.index)
    await commit(ctx, user, version, acked, need=r)
    return Registration(version=version.hex(), replaced=replaced if registered else None)


def current_policy(states: Mapping[NodeRef, UserStatus]) -> int:
    """The guess limit of a registration that does not name one: the limit most nodes report
    for the highest-epoch committed version (the version's own, never another version's
    count), else the default. Password changes and migrations pass the recovered version's
    limit instead (``VersionChoice.max_guesses``)."""
    committed = [s.committed for s in states.values() if s.committed is not None]
    if not committed:
        return DEFAULT_MAX_GUESSES
    top = max(info.epoch for info in committed)
    limits = Counter(i.max_guesses for i in committed if i.epoch == top and i.max_guesses)
    return limits.most_common(1)[0][0] if limits else DEFAULT_MAX_GUESSES
