"""node.toml validation: every bad key is a ConfigError naming it; paths resolve locally."""

from __future__ import annotations

import os
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import tomli_w

from pakr.node.config import DataKeySource, RateLimits, load_config, parse_config
from pakr.proto.errors import ConfigError

GOOD = """
[node]
id = "00112233445566778899aabbccddeeff"
index = 3
listen = "127.0.0.1:7001"

[tls]
cert = "tls/node.crt"
key = "tls/node.key"

[data_key]
file = "data.key"

[tenants]
"acme:1" = "ed25519:AAAA"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_good_config_and_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.node_id == bytes.fromhex("00112233445566778899aabbccddeeff")
    assert config.index == 3 and not config.insecure
    assert config.tls_cert == tmp_path.resolve() / "tls/node.crt"
    assert config.storage_url == f"sqlite://{tmp_path.resolve()}/node.db"
    assert config.data_key.file == tmp_path.resolve() / "data.key"
    assert config.tenants == {"acme:1": "ed25519:AAAA"}
    assert config.rate_limits.user_rate == 5.0 and config.metrics_listen is None


def test_absolute_sqlite_and_postgres_urls(tmp_path: Path) -> None:
    text = GOOD + '\n[storage]\nurl = "sqlite:////var/lib/pakr/node.db"\n'
    assert load_config(write(tmp_path, text)).storage_url == "sqlite:///var/lib/pakr/node.db"
    text = GOOD + '\n[storage]\nurl = "postgresql://pakr@db/pakr"\n'
    assert load_config(write(tmp_path, text)).storage_url == "postgresql://pakr@db/pakr"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('id = "00112233445566778899aabbccddeeff"', 'id = "0011"', "node.id"),
        ('id = "00112233445566778899aabbccddeeff"', 'id = "zz"', "node.id"),
        ("index = 3", "index = 0", "node.index"),
        ("index = 3", "index = 256", "node.index"),
        ("index = 3", 'index = "3"', "node.index"),
        ('listen = "127.0.0.1:7001"', 'listen = "nowhere"', "node.listen"),
        ('listen = "127.0.0.1:7001"', 'listen = "127.0.0.1:99999"', "node.listen"),
        ("index = 3", "index = 3\ninsecure = true\n", None),  # loopback: allowed
        ('listen = "127.0.0.1:7001"', 'listen = "10.0.0.1:7001"\ninsecure = true', "node.insecure"),
        ("index = 3", 'index = 3\nlog_level = "loud"', "node.log_level"),
        ("index = 3", "index = 3\ncrypto_thread = 1", "node.crypto_thread"),
        ("index = 3", "index = 3\ncolour = 1", "node.colour"),
        ('file = "data.key"', 'file = "data.key"\nenv = "X"', "data_key"),
        ('file = "data.key"', "", "data_key"),
        ('"acme:1" = "ed25519:AAAA"', '"acme" = "ed25519:AAAA"', "tenants.acme"),
        ('"acme:1" = "ed25519:AAAA"', '"acme:1" = "rsa:AAAA"', "tenants.acme:1"),
        ("[tls]", "[tls]\nca = 1", "tls.ca"),
        ("[tenants]", '[storage]\nurl = "mysql://x"\n[tenants]', "storage.url"),
        ("[tenants]", "[rate_limit]\nuser_rate = -1\n[tenants]", "rate_limit.user_rate"),
        ("[tenants]", "[rate_limit]\npeer_burst = 0\n[tenants]", "rate_limit.peer_burst"),
        ("[tenants]", '[metrics]\nlisten = "x"\n[tenants]', "metrics.listen"),
        ("[tenants]", "[audit]\nretention_days = 0\n[tenants]", "audit.retention_days"),
        ("[tenants]", "[extra]\n[tenants]", "node.toml.extra"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, old: str, new: str, key: str | None) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    if key is None:
        load_config(path)
        return
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key in str(info.value)
    assert str(path) in str(info.value)


def test_tls_required_unless_insecure(tmp_path: Path) -> None:
    text = GOOD.replace('cert = "tls/node.crt"\n', "")
    with pytest.raises(ConfigError, match=r"tls\.cert"):
        load_config(write(tmp_path, text))


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[node\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_data_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match=r"data_key\.file"):
        config.data_key.load()
    key = os.urandom(32)
    (tmp_path / "data.key").write_text(key.hex() + "\n")
    assert config.data_key.load() == key
    (tmp_path / "data.key").write_text("abcd")
    with pytest.raises(ConfigError, match="64 hex"):
        config.data_key.load()
    env = load_config(write(tmp_path, GOOD.replace('file = "data.key"', 'env = "PAKR_TEST_KEY"')))
    with pytest.raises(ConfigError, match="PAKR_TEST_KEY"):
        env.data_key.load()
    monkeypatch.setenv("PAKR_TEST_KEY", key.hex())
    assert env.data_key.load() == key


def test_a_config_round_trips_through_toml(tmp_path: Path) -> None:
    text = GOOD + '\n[storage]\nurl = "sqlite:///db/node.db"\n[metrics]\nlisten = "[::1]:9100"\n'
    config = load_config(write(tmp_path, text))
    assert parse_config(config.to_toml(), config.path) == config
    changed = replace(
        config,
        rate_limits=RateLimits(0.5, 3, 0.0, 7),
        tenants={'we"ird\n\x01:2': "ed25519:BBBB", "acme:1": "ed25519:AAAA"},
        sweep_seconds=0.25,
        crypto_thread=True,
        log_level="debug",
        key_roll_seconds=1800.0,
    )
    changed.save()
    assert os.stat(changed.path).st_mode & 0o777 == 0o600
    assert load_config(changed.path) == changed
    assert 'url = "sqlite:///db/node.db"' in changed.path.read_text()  # stays movable


def test_paths_outside_the_directory_stay_absolute(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    elsewhere = replace(
        config,
        storage_url="sqlite:///var/lib/pakr/node.db",  # resolved: sqlite:// + absolute path
        data_key=DataKeySource(env="PAKR_DATA_KEY"),
        tls_cert=None,
        tls_key=None,
        insecure=True,
        listen="127.0.0.1:7001",
    )
    doc = elsewhere.to_toml()
    assert doc["storage"]["url"] == "sqlite:////var/lib/pakr/node.db"
    assert doc["data_key"] == {"env": "PAKR_DATA_KEY"} and "tls" not in doc
    assert parse_config(tomllib.loads(tomli_w.dumps(doc)), config.path) == elsewhere
