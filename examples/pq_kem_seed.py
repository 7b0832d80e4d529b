"""A post-quantum ML-KEM-768 key pair regenerated from a 64-byte seed held in pakr.

FIPS 203 key generation is deterministic from a 64-byte seed (d ‖ z): ``key_derive(seed)``
gives the same encapsulation and decapsulation keys every time. pakr stores the seed (64
bytes, well under its 128-byte limit) instead of the 2,400-byte decapsulation key. After
recovery the device rebuilds the key pair and decapsulates what a sender encapsulated to the
old public key.

    python examples/pq_kem_seed.py --manifest D/manifest.json --token-key D/tenants/dev.key \
        --operator-key "$(cat D/operator.pub)"
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

from kyber_py.ml_kem import ML_KEM_768

import pakr

DEMO_PASSWORD = "demo only: post-quantum passphrase"  # a real app prompts for it
SEED_LEN = 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--token-key", required=True)
    parser.add_argument(
        "--operator-key", required=True, help="the operator public key to pin (D/operator.pub)"
    )
    parser.add_argument("--user", default="alice-pq")
    args = parser.parse_args(argv)
    provider = pakr.dev_token_provider(args.token_key)

    def device() -> pakr.Client:
        return pakr.Client.from_manifest(
            args.manifest,
            operator_key=args.operator_key,
            tenant=provider.tenant,
            token_provider=provider,
        )

    seed = os.urandom(SEED_LEN)
    ek, _dk = ML_KEM_768.key_derive(seed)
    fingerprint = hashlib.sha256(ek).hexdigest()[:16]
    with device() as client:
        client.register(args.user, DEMO_PASSWORD, seed)
    print(f"device 1: ML-KEM-768 key {fingerprint}… ({len(ek)}-byte public key); seed in pakr")
    del seed, _dk

    # A sender encapsulates a key to the published public key.
    shared, ciphertext = ML_KEM_768.encaps(ek)

    # Device 2: recover the seed, rebuild the key pair, decapsulate.
    with device() as client:
        restored = client.recover(args.user, DEMO_PASSWORD)
    ek2, dk2 = ML_KEM_768.key_derive(restored)
    if ek2 != ek:
        print("FAIL: the rebuilt public key differs", file=sys.stderr)
        return 1
    if ML_KEM_768.decaps(dk2, ciphertext) != shared:
        print("FAIL: decapsulation gave another shared key", file=sys.stderr)
        return 1
    print(f"device 2: rebuilt key {fingerprint}… from the seed; decapsulation matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
