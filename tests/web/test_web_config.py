"""The ``[web]`` table: off when absent, every unsafe or malformed setting a ConfigError
naming its key, and the origin the manifest lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from pakr.coordinator.manifest_tools import manifest_node
from pakr.node.config import load_config
from pakr.proto.errors import ConfigError
from tests.node.conftest import write_node_dir
from tests.node.test_config import GOOD

ORIGINS = 'allowed_origins = ["https://app.example"]'


def web(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(GOOD + f"\n[web]\n{body}\n")
    return path


def test_off_unless_configured(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(GOOD)
    assert load_config(path).web is None


def test_a_full_table(tmp_path: Path) -> None:
    config = load_config(
        web(
            tmp_path,
            'listen = "0.0.0.0:8443"\norigin = "https://node3.example"\n'
            'allowed_origins = ["https://app.example", "http://localhost:5173"]\n'
            'tls_cert = "web/c.pem"\ntls_key = "web/k.pem"\n'
            'trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]',
        )
    ).web
    assert config is not None
    assert (config.host, config.port, config.tls) == ("0.0.0.0", 8443, True)
    assert config.allowed_origins == ("https://app.example", "http://localhost:5173")
    assert config.tls_cert == tmp_path.resolve() / "web/c.pem"
    assert config.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")
    assert config.public_origin() == "https://node3.example"


@pytest.mark.parametrize(
    ("body", "origin"),
    [
        (f'listen = "127.0.0.1:8443"\n{ORIGINS}', "http://127.0.0.1:8443"),
        (f'listen = "[::1]:8443"\n{ORIGINS}', "http://[::1]:8443"),
        ('listen = "127.0.0.1:18443"\ndev_origins = true', "http://127.0.0.1:18443"),
        (
            f'listen = "127.0.0.1:443"\n{ORIGINS}\ntls_cert = "c"\ntls_key = "k"',
            "https://127.0.0.1",
        ),
    ],
)
def test_the_origin_derived_from_listen(tmp_path: Path, body: str, origin: str) -> None:
    config = load_config(web(tmp_path, body)).web
    assert config is not None and config.public_origin() == origin


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("", "web.listen"),
        ('listen = "nowhere"', "web.listen"),
        ('listen = "127.0.0.1:8443"', "web.allowed_origins"),  # nobody allowed: refuse
        ('listen = "127.0.0.1:8443"\nallowed_origins = ["*"]', "wildcard"),
        ('listen = "127.0.0.1:8443"\nallowed_origins = ["https://*.example"]', "wildcard"),
        (
            'listen = "127.0.0.1:8443"\nallowed_origins = ["https://app.example/"]',
            "allowed_origins",
        ),
        ('listen = "127.0.0.1:8443"\nallowed_origins = "https://app.example"', "allowed_origins"),
        (f'listen = "10.0.0.1:8443"\n{ORIGINS}', "web.listen is not a loopback"),
        ('listen = "10.0.0.1:8443"\ndev_origins = true\ntls_cert = "c"\ntls_key = "k"', "dev"),
        ('listen = "127.0.0.1:8443"\ndev_origins = "yes"', "web.dev_origins"),
        (f'listen = "127.0.0.1:8443"\n{ORIGINS}\ntls_cert = "c"', "both or neither"),
        (f'listen = "127.0.0.1:8443"\n{ORIGINS}\ntrusted_proxies = ["proxy"]', "trusted_proxies"),
        (f'listen = "127.0.0.1:8443"\n{ORIGINS}\norigin = "node.example"', "web.origin"),
        (f'listen = "127.0.0.1:8443"\n{ORIGINS}\ncors = true', "web.cors"),
    ],
)
def test_refused(tmp_path: Path, body: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(web(tmp_path, body))


def test_the_manifest_entry_carries_the_web_origin(tmp_path: Path) -> None:
    tls = 'tls_cert = "tls/node.crt"\ntls_key = "tls/node.key"'
    wildcard = write_node_dir(
        tmp_path / "a", tenants={}, web=f'listen = "0.0.0.0:8443"\n{ORIGINS}\n{tls}'
    )
    with pytest.raises(ConfigError, match=r"web\.origin"):
        manifest_node(load_config(wildcard))
    named = write_node_dir(
        tmp_path / "b",
        tenants={},
        web=f'listen = "0.0.0.0:8443"\n{ORIGINS}\n{tls}\norigin = "https://n3.example"',
    )
    assert manifest_node(load_config(named)).web_origin == "https://n3.example"
    local = write_node_dir(
        tmp_path / "c", tenants={}, web='listen = "127.0.0.1:18443"\ndev_origins = true'
    )
    assert manifest_node(load_config(local)).web_origin == "http://127.0.0.1:18443"
    plain = write_node_dir(tmp_path / "d", tenants={})
    assert manifest_node(load_config(plain)).web_origin is None
