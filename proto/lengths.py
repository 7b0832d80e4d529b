"""Every fixed byte length of the protocol, in one place (docs/protocol.md gives each).

The message modules, the key schedule and the wire codec all check these; a length written
twice could drift apart, so each is defined here once and imported where it is checked.
"""

from __future__ import annotations

SCALAR_LEN = 32  # a ristretto255 scalar
ELEMENT_LEN = 32  # a ristretto255 element
DIGEST_LEN = 32  # KMAC256 / TupleHash256 outputs used as keys and commitments
OPRF_OUTPUT_LEN = 64
VERSION_LEN = 16
NODE_ID_LEN = 16
ATTEMPT_ID_LEN = 16
NONCE_LEN = 16
RESET_NONCE_LEN = 40  # expiry (8) ‖ random (16) ‖ MAC (16): see pakr.proto.reset
REQUEST_ID_LEN = 16
MAC_LEN = 32
SIGNATURE_LEN = 64  # Ed25519
VERIFYING_KEY_LEN = 32  # Ed25519
