"""The node's HPKE key pair on disk: ``hpke.key`` (the private seed, 0600) and ``hpke.pub``.

Clients seal Register2's shares to the public key the signed manifest lists for the node, so
only this node can read them, whatever terminates TLS in front of it. The private key is a
file of its own, never a database column: a database copy or backup carries nothing that
opens a captured Register2. Rotation: generate a new pair (``pakr node hpke-keygen --force``),
restart the node, publish a manifest with a higher serial listing the new public key; clients
that still hold the old manifest fail Register2 at that node until they fetch the new one.
"""

from __future__ import annotations

import os
import secrets
import stat

from pakr.node.config import HpkeKeyFiles
from pakr.proto.errors import ConfigError, MalformedMessage
from pakr.proto.files import write_private_file
from pakr.proto.hpke import SEED_LEN, HpkePrivateKey, HpkePublicKey


def generate_key_files(files: HpkeKeyFiles, *, force: bool = False) -> HpkePublicKey:
    """Write a fresh key pair (refusing to replace one unless ``force``)."""
    if files.private_key_file.exists() and not force:
        raise ConfigError(
            f"{files.private_key_file} exists; replacing it is a key rotation (use --force,"
            " then publish a manifest with the new public key)"
        )
    key = HpkePrivateKey.from_seed(secrets.token_bytes(SEED_LEN))
    files.private_key_file.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(files.private_key_file, (key.seed.hex() + "\n").encode("ascii"))
    files.public_key_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = files.public_key_file.with_name(files.public_key_file.name + ".tmp")
    tmp.write_text(key.public.text + "\n", encoding="ascii")
    os.replace(tmp, files.public_key_file)
    return key.public


def read_public_key(files: HpkeKeyFiles) -> HpkePublicKey:
    """The public key the manifest should list for this node."""
    try:
        text = files.public_key_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the HPKE public key {files.public_key_file}: {exc}"
        ) from None
    try:
        return HpkePublicKey.from_text(text, str(files.public_key_file))
    except MalformedMessage as exc:
        raise ConfigError(str(exc)) from None


def load_private_key(files: HpkeKeyFiles) -> HpkePrivateKey:
    """The node's private key; refuses a file others can read or one not matching ``.pub``."""
    path = files.private_key_file
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the HPKE private key {path}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others; chmod 600 it")
    try:
        seed = bytes.fromhex(text)
        key = HpkePrivateKey.from_seed(seed)
    except (ValueError, MalformedMessage):
        raise ConfigError(f"{path} must hold 64 hex characters (the X-Wing seed)") from None
    if read_public_key(files) != key.public:
        raise ConfigError(
            f"{files.public_key_file} does not match {path}; regenerate both or restore the pair"
        )
    return key
