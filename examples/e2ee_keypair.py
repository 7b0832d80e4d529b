"""Back up an end-to-end-encryption identity with pakr and restore it on a new device.

A messenger's identity is an Ed25519 signing key (who you are) and an X25519 key (how others
encrypt to you). Both are derived from one 32-byte seed; only the seed goes into pakr. On a
new device the user types their password, the app recovers the seed and re-derives the very
same keys: contacts see no key change, and old messages still decrypt.

Run against a local cluster (``pakr cluster up --dir D``)::

    python examples/e2ee_keypair.py --manifest D/manifest.json --token-key D/tenants/dev.key \
        --operator-key "$(cat D/operator.pub)"
"""

from __future__ import annotations

import argparse
import os
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import pakr

DEMO_PASSWORD = "demo only: correct horse battery staple"  # a real app prompts for it


def identity_from_seed(seed: bytes) -> tuple[Ed25519PrivateKey, X25519PrivateKey]:
    """Derive both identity keys from one seed (HKDF with distinct labels)."""

    def derive(label: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 32, salt=None, info=label).derive(seed)

    return (
        Ed25519PrivateKey.from_private_bytes(derive(b"example/e2ee/ed25519")),
        X25519PrivateKey.from_private_bytes(derive(b"example/e2ee/x25519")),
    )


def raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--token-key", required=True)
    parser.add_argument(
        "--operator-key", required=True, help="the operator public key to pin (D/operator.pub)"
    )
    parser.add_argument("--user", default="alice-e2ee")
    args = parser.parse_args(argv)
    provider = pakr.dev_token_provider(args.token_key)

    def device() -> pakr.Client:
        return pakr.Client.from_manifest(
            args.manifest,
            operator_key=args.operator_key,
            tenant=provider.tenant,
            token_provider=provider,
        )

    # Device 1: create the identity and back up its seed.
    seed = os.urandom(32)
    signing, agreement = identity_from_seed(seed)
    fingerprint = raw_public(signing).hex()[:16]
    print(f"device 1: new identity {fingerprint}…, backing up its seed with pakr")
    message = b"hello from alice"
    signature = signing.sign(message)
    peer = X25519PrivateKey.generate()  # a contact who encrypted to alice earlier
    old_shared = peer.exchange(agreement.public_key())
    with device() as client:
        client.register(args.user, DEMO_PASSWORD, seed)
    del seed, signing, agreement  # device 1 is lost

    # Device 2: recover the seed with the password and re-derive the identity.
    with device() as client:
        restored_seed = client.recover(args.user, DEMO_PASSWORD)
    signing2, agreement2 = identity_from_seed(restored_seed)
    if raw_public(signing2).hex()[:16] != fingerprint:
        print("FAIL: the restored identity differs", file=sys.stderr)
        return 1
    signing2.public_key().verify(signature, message)  # old signatures still verify
    if agreement2.exchange(peer.public_key()) != old_shared:
        print("FAIL: the restored X25519 key derives another shared secret", file=sys.stderr)
        return 1
    signing2.public_key().verify(signing2.sign(b"from the new device"), b"from the new device")
    print(f"device 2: restored identity {fingerprint}…: same keys, old messages decrypt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
