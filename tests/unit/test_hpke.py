"""HPKE keys and sealing (pakr.proto.hpke), and the node's key files (pakr.node.hpke_keys)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pakr.node.config import HpkeKeyFiles, load_config
from pakr.node.hpke_keys import generate_key_files, load_private_key, read_public_key
from pakr.proto.errors import ConfigError, MalformedMessage
from pakr.proto.hpke import (
    ENC_LEN,
    PUBLIC_KEY_LEN,
    HpkePrivateKey,
    HpkePublicKey,
    recover3_info,
    register2_info,
)
from pakr.proto.messages import UserRef

KEY = HpkePrivateKey.from_seed(bytes(range(32)))
USER = UserRef("acme", "alice")


def test_seed_determines_the_key_pair_and_repr_hides_it() -> None:
    again = HpkePrivateKey.from_seed(bytes(range(32)))
    assert again.public == KEY.public and len(KEY.public.encoded) == PUBLIC_KEY_LEN
    assert HpkePrivateKey.from_seed(bytes(32)).public != KEY.public
    assert bytes(range(32)).hex() not in repr(KEY) and "seed" not in repr(KEY)
    assert HpkePublicKey.from_text(KEY.public.text) == KEY.public


def test_seal_opens_only_with_the_key_and_the_info() -> None:
    info = register2_info(USER, bytes(16), bytes(16), 1)
    sealed = KEY.public.seal(b"shares", info)
    assert len(sealed) == ENC_LEN + len(b"shares") + 16
    assert KEY.open(sealed, info, "x") == b"shares"
    assert KEY.public.seal(b"shares", info) != sealed  # fresh ephemeral key each time
    other_info = register2_info(USER, bytes(16), bytes(16), 2)
    with pytest.raises(MalformedMessage, match="does not decrypt"):
        KEY.open(sealed, other_info, "x")
    with pytest.raises(MalformedMessage, match="does not decrypt"):
        HpkePrivateKey.from_seed(os.urandom(32)).open(sealed, info, "x")
    with pytest.raises(MalformedMessage, match="too short"):
        KEY.open(sealed[:100], info, "x")
    assert register2_info(USER, bytes(16), bytes(16), 1) != recover3_info(
        USER, bytes(16), bytes(16), bytes(16)
    )


@settings(max_examples=50)
@given(sealed=st.binary(max_size=1500), flip=st.integers(0, 1400))
def test_any_damage_is_a_typed_refusal(sealed: bytes, flip: int) -> None:
    info = recover3_info(USER, bytes(16), bytes(16), bytes(16))
    good = bytearray(KEY.public.seal(b"x" * 32, info))
    good[flip % len(good)] ^= 1
    for candidate in (sealed, bytes(good)):
        with pytest.raises(MalformedMessage):
            KEY.open(candidate, info, "x")


@pytest.mark.parametrize("raw", [b"", bytes(PUBLIC_KEY_LEN - 1), b"\xff" * PUBLIC_KEY_LEN])
def test_bad_public_keys_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        HpkePublicKey.decode(raw)
    with pytest.raises(MalformedMessage):
        HpkePublicKey.from_text("not base64url!")


def test_node_key_files(tmp_path: Path) -> None:
    files = HpkeKeyFiles(tmp_path / "hpke.key", tmp_path / "hpke.pub")
    public = generate_key_files(files)
    assert (files.private_key_file.stat().st_mode & 0o777) == 0o600
    assert read_public_key(files) == public == load_private_key(files).public
    with pytest.raises(ConfigError, match="rotation"):
        generate_key_files(files)
    os.chmod(files.private_key_file, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_private_key(files)
    os.chmod(files.private_key_file, 0o600)
    other = HpkeKeyFiles(tmp_path / "other.key", tmp_path / "other.pub")
    generate_key_files(other)
    files.public_key_file.write_text(other.public_key_file.read_text())
    with pytest.raises(ConfigError, match="does not match"):
        load_private_key(files)
    rotated = generate_key_files(files, force=True)
    assert rotated != public and load_private_key(files).public == rotated


def test_keygen_adds_a_key_to_a_node_from_before_protocol_2(tmp_path: Path) -> None:
    from pakr.node.cli import main

    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\nid = "00112233445566778899aabbccddeeff"\nindex = 1\n'
        'listen = "127.0.0.1:7001"\ninsecure = true\n\n[data_key]\nfile = "data.key"\n'
    )
    with pytest.raises(ConfigError, match="hpke-keygen"):
        load_config(config).hpke_files()
    assert main(["node", "hpke-keygen", "--config", str(config)]) == 0
    files = load_config(config).hpke_files()
    assert load_private_key(files).public == read_public_key(files)
    assert main(["node", "hpke-keygen", "--config", str(config)]) == 2  # no silent rotation
