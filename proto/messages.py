"""The protocol's messages as small frozen dataclasses over validated values.

These are what the pure protocol steps (``register.py``, ``recover.py``, ``delete.py``) take
and return. ``wire.py`` converts them to and from the protobuf messages of ``node.proto``,
validating every field on the way in, so a value of one of these types is always well formed:
right lengths, canonical scalars, valid non-identity group elements.

Secret-bearing fields (OPRF and secret shares, unlock tags) are excluded from ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pakr.proto.group import Element, Scalar
from pakr.proto.kdf import Argon2Params

# The field lengths, defined in pakr.proto.lengths; re-exported for the step modules that
# check them alongside these messages.
from pakr.proto.lengths import ATTEMPT_ID_LEN as ATTEMPT_ID_LEN
from pakr.proto.lengths import MAC_LEN as MAC_LEN
from pakr.proto.lengths import NODE_ID_LEN as NODE_ID_LEN
from pakr.proto.lengths import NONCE_LEN as NONCE_LEN
from pakr.proto.lengths import REQUEST_ID_LEN as REQUEST_ID_LEN
from pakr.proto.lengths import RESET_NONCE_LEN as RESET_NONCE_LEN
from pakr.proto.lengths import SIGNATURE_LEN as SIGNATURE_LEN
from pakr.proto.lengths import VERIFYING_KEY_LEN as VERIFYING_KEY_LEN
from pakr.proto.lengths import VERSION_LEN as VERSION_LEN
from pakr.proto.oprf import Proof

PROTOCOL_VERSION = 2

MAX_USER_ID_BYTES = 128
MAX_TENANT_BYTES = 64
MAX_GUESSES_LIMIT = 100
DEFAULT_MAX_GUESSES = 10
MAX_EPOCH = 2**64 - 1
LOCKOUT_GRACE_SECONDS = 600.0  # a last failed guess without its Recover3 locks after this


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What the protocol needs to know of a node: its 16-byte id and its Shamir index."""

    node_id: bytes
    index: int

    @property
    def name(self) -> str:
        """Human-readable name for error messages (never secret)."""
        return f"node{self.index}({self.node_id.hex()[:8]})"


@dataclass(frozen=True, slots=True)
class UserRef:
    """Whose secret: the tenant (application) and its user id."""

    tenant: str
    user_id: str


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of a node's audit log as ReadAudit returns it (no secrets in any field)."""

    id: int
    time: float
    tenant: str
    user_id: str
    op: str
    outcome: str
    peer: str


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One stored version of a registration as a node reports it (Register1/Recover1)."""

    version: bytes
    epoch: int
    argon2: Argon2Params
    guesses_remaining: int
    locked: bool = False
    max_guesses: int = 0  # the version's own guess limit (0: the node did not say)

    @property
    def usable(self) -> bool:
        """Whether this node can still evaluate a guess for the version."""
        return not self.locked and self.guesses_remaining > 0


@dataclass(frozen=True, slots=True)
class UserStatus:
    """A node's view of a user: committed and pending versions and a tombstone epoch."""

    committed: VersionInfo | None = None
    pending: VersionInfo | None = None
    tombstone_epoch: int = 0
    reset_nonce: bytes = b""  # Recover1 only: the node's single-use nonce for ResetGuesses

    @property
    def highest_epoch(self) -> int:
        """The highest epoch this node holds for the user (0 if it knows nothing)."""
        epochs = [self.tombstone_epoch]
        epochs += [v.epoch for v in (self.committed, self.pending) if v is not None]
        return max(epochs)

    @property
    def is_empty(self) -> bool:
        return self.committed is None and self.pending is None and self.tombstone_epoch == 0


@dataclass(frozen=True, slots=True)
class Register2:
    """Register2: one node's share of a new registration, stored as the pending version."""

    version: bytes
    epoch: int
    expected: bytes | None
    oprf_key_share: Scalar = field(repr=False)
    oprf_public_share: Element
    oprf_key_signature: bytes
    verifying_key: bytes
    commitment: bytes
    unlock_tag: bytes = field(repr=False)
    secret_share: Scalar = field(repr=False)
    encrypted_secret: bytes = field(repr=False)
    secret_commitment: bytes
    max_guesses: int
    argon2: Argon2Params


@dataclass(frozen=True, slots=True)
class Register3:
    """Register3 (commit): make the pending ``version`` the committed one."""

    version: bytes


@dataclass(frozen=True, slots=True)
class Recover2:
    """Recover2: a counted OPRF evaluation of the blinded element ``B``."""

    version: bytes
    attempt_id: bytes
    blinded_element: Element


@dataclass(frozen=True, slots=True)
class Recover2Reply:
    """A node's evaluation ``Z_i = k_i·B`` with its DLEQ proof and signed public share."""

    evaluated_element: Element
    proof: Proof
    oprf_public_share: Element
    oprf_key_signature: bytes
    verifying_key: bytes
    commitment: bytes
    guesses_remaining: int
    nonce: bytes
    max_guesses: int  # the version's signed limit (checked with sig_i)


@dataclass(frozen=True, slots=True)
class Recover3:
    """Recover3: prove knowledge of the unlock key for the node's latest attempt."""

    version: bytes
    attempt_id: bytes
    unlock_proof: bytes
    reply_key: bytes = b""  # the client's fresh HPKE public key for this attempt's reply
    # The matching private seed, client side only (never encoded, compared or shown).
    reply_seed: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Recover3Reply:
    """A node's share ``s_i`` of the encryption scalar and the encrypted secret."""

    secret_share: Scalar = field(repr=False)
    encrypted_secret: bytes = field(repr=False)
    secret_commitment: bytes


@dataclass(frozen=True, slots=True)
class ResetGuesses:
    """ResetGuesses: reset the count of ``version`` at a node that did not release its share,
    proven under the node's unlock tag over the single-use nonce it issued with Recover1."""

    version: bytes
    nonce: bytes
    proof: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete: replace every version of the user with a tombstone at ``epoch``."""

    epoch: int
