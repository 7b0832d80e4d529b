"""A password manager whose vault key lives in pakr, restored on a second device.

The vault key (32 random bytes) is the only thing pakr holds. Each entry is sealed with
ChaCha20-Poly1305 under that key with a fresh random nonce and the site URL as associated
data, so an entry cannot be moved to another site without detection. The sealed vault file
can sit anywhere (a sync service); without the password (and a threshold of pakr nodes) it is
noise.

    python examples/password_vault.py --manifest D/manifest.json --token-key D/tenants/dev.key \
        --operator-key "$(cat D/operator.pub)"
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import pakr

DEMO_PASSWORD = "demo only: vault passphrase"  # a real app prompts for it
NONCE_LEN = 12


def seal(key: bytes, url: str, password: str) -> dict[str, str]:
    """One vault entry: a random nonce and the ciphertext bound to its URL."""
    nonce = os.urandom(NONCE_LEN)
    sealed = ChaCha20Poly1305(key).encrypt(nonce, password.encode(), url.encode())
    return {
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
    }


def open_entry(key: bytes, url: str, entry: dict[str, str]) -> str:
    """Decrypt an entry; ``InvalidTag`` if it was altered or belongs to another URL."""
    nonce = base64.b64decode(entry["nonce"])
    sealed = base64.b64decode(entry["ciphertext"])
    return ChaCha20Poly1305(key).decrypt(nonce, sealed, url.encode()).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--token-key", required=True)
    parser.add_argument(
        "--operator-key", required=True, help="the operator public key to pin (D/operator.pub)"
    )
    parser.add_argument("--user", default="alice-vault")
    parser.add_argument("--vault", type=Path, help="vault file (default: a temporary file)")
    args = parser.parse_args(argv)
    provider = pakr.dev_token_provider(args.token_key)
    vault_path = args.vault or Path(tempfile.mkdtemp()) / "vault.json"
    entries = {
        "https://mail.example": "s3cret-mail",
        "https://bank.example": "s3cret-bank",
    }

    def device() -> pakr.Client:
        return pakr.Client.from_manifest(
            args.manifest,
            operator_key=args.operator_key,
            tenant=provider.tenant,
            token_provider=provider,
        )

    # Device 1: make a vault key, keep it in pakr, write the sealed vault.
    vault_key = ChaCha20Poly1305.generate_key()
    with device() as client:
        client.register(args.user, DEMO_PASSWORD, vault_key)
    vault = {url: seal(vault_key, url, pw) for url, pw in entries.items()}
    vault_path.write_text(json.dumps(vault, indent=2))
    print(f"device 1: sealed {len(vault)} entries into {vault_path}")
    del vault_key

    # Device 2: only the vault file and the password.
    with device() as client:
        key = client.recover(args.user, DEMO_PASSWORD)
    stored = json.loads(vault_path.read_text())
    for url, expected in entries.items():
        if open_entry(key, url, stored[url]) != expected:
            print(f"FAIL: wrong password for {url}", file=sys.stderr)
            return 1
    try:  # an entry swapped onto another site is detected
        open_entry(key, "https://bank.example", stored["https://mail.example"])
    except InvalidTag:
        pass
    else:
        print("FAIL: a moved entry decrypted", file=sys.stderr)
        return 1
    print(f"device 2: recovered the vault key, opened {len(entries)} entries; swaps detected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
