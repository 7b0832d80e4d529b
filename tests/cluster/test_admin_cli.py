"""Operator commands without running nodes: tenant keys, manifest create/verify, configs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pakr.coordinator.config import CanaryConfig, CoordinatorConfig, load_config
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import OperatorKey, load_manifest
from pakr.proto.tokens import TenantKey
from tests.cluster.cluster_helpers import run_admin, write_node_dir


def _operator(tmp_path: Path) -> tuple[Path, str]:
    code, out, _ = run_admin("manifest", "keygen", str(tmp_path / "operator.key"))
    assert code == 0
    return tmp_path / "operator.key", json.loads(out)["public_key"]


def _nodes(tmp_path: Path, n: int) -> list[Path]:
    return [write_node_dir(tmp_path / "nodes", i, 7000 + i) for i in range(1, n + 1)]


def test_tenant_create_writes_private_key_file_and_prints_node_line(tmp_path: Path) -> None:
    code, out, err = run_admin("tenant", "create", "acme", "--dir", str(tmp_path))
    assert code == 0
    info = json.loads(out)
    path = Path(info["key_file"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = TenantKey.load(path)
    assert info["kid"] == "acme:1" == key.kid
    assert info["public_key"] == key.public_key_text
    assert f"--tenant acme:1={key.public_key_text}" in err
    assert "private" not in err
    # Never overwrites an existing key; rotation writes a second file.
    code, _, err = run_admin("tenant", "create", "acme", "--dir", str(tmp_path))
    assert code == 2 and "already exists" in err
    code, out, _ = run_admin("tenant", "create", "acme", "--dir", str(tmp_path), "--number", "2")
    assert code == 0 and json.loads(out)["kid"] == "acme:2"


def test_tenant_create_refuses_bad_name(tmp_path: Path) -> None:
    code, _, err = run_admin("tenant", "create", "a:b", "--dir", str(tmp_path))
    assert code == 2 and "no ':'" in err


def test_manifest_create_then_verify(tmp_path: Path) -> None:
    key_path, public = _operator(tmp_path)
    configs = _nodes(tmp_path, 5)
    out_path = tmp_path / "manifest.json"
    code, out, err = run_admin(
        "manifest", "create", "--operator-key", str(key_path),
        "--node-config", *map(str, configs), "--threshold", "3", "--dev",
        "--serial", "4", "--out", str(out_path),
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["threshold"] == 3 and summary["nodes"] == 5 and summary["serial"] == 4
    manifest = load_manifest(out_path, operator_key=public)
    assert [n.index for n in manifest.nodes] == [1, 2, 3, 4, 5]
    assert manifest.register_threshold == 5
    assert manifest.argon2.memory_kib == 19456  # dev default
    pem = (configs[0].parent / "tls" / "node.crt").read_text()
    assert manifest.nodes[0].tls_cert_pem == pem
    assert manifest.nodes[0].address == "127.0.0.1:7001"

    code, out, err = run_admin("manifest", "verify", str(out_path), "--operator-key", public)
    assert code == 0 and json.loads(out)["valid"] is True
    code, out, err = run_admin("manifest", "verify", str(out_path))
    assert code == 0 and "warning" in err
    code, _, err = run_admin("manifest", "verify", str(out_path), "--min-serial", "5")
    assert code == 2 and "rollback" in err


def test_manifest_create_production_defaults_and_rules(tmp_path: Path) -> None:
    key_path, public = _operator(tmp_path)
    configs = _nodes(tmp_path, 4)
    out_path = tmp_path / "m.json"
    base = ["manifest", "create", "--operator-key", str(key_path), "--out", str(out_path),
            "--node-config", *map(str, configs)]  # fmt: skip
    # t must exceed n/2.
    code, _, err = run_admin(*base, "--threshold", "2")
    assert code == 2 and "exceed half" in err
    assert not out_path.exists()
    code, _, err = run_admin(*base, "--threshold", "3", "--register-threshold", "5")
    assert code == 2 and "register_threshold" in err
    code, _, err = run_admin(*base, "--threshold", "3", "--argon2-memory-kib", "1024")
    assert code == 2 and "memory_kib" in err
    code, _, err = run_admin(*base, "--threshold", "3", "--address", "9=host:1")
    assert code == 2 and "9" in err
    code, _, err = run_admin(*base, "--threshold", "3", "--address", "2=node2.internal:7443")
    assert code == 0, err
    manifest = load_manifest(out_path, operator_key=public)
    assert manifest.argon2.memory_kib == 65536 and not manifest.dev
    assert manifest.nodes[1].address == "node2.internal:7443"


def test_manifest_create_refuses_wildcard_listen_without_address(tmp_path: Path) -> None:
    key_path, _ = _operator(tmp_path)
    config = write_node_dir(tmp_path, 1, 7001)
    config.write_text(config.read_text().replace("127.0.0.1:7001", "0.0.0.0:7001"))
    code, _, err = run_admin(
        "manifest", "create", "--operator-key", str(key_path), "--node-config", str(config),
        "--threshold", "1", "--dev", "--out", str(tmp_path / "m.json"),
    )  # fmt: skip
    assert code == 2 and "--address 1=HOST:PORT" in err


def test_tampered_manifest_refused_by_verify(tmp_path: Path) -> None:
    key_path, public = _operator(tmp_path)
    configs = _nodes(tmp_path, 3)
    path = tmp_path / "manifest.json"
    code, _, _ = run_admin(
        "manifest", "create", "--operator-key", str(key_path), "--node-config",
        *map(str, configs), "--threshold", "2", "--out", str(path),
    )  # fmt: skip
    assert code == 0
    document = json.loads(path.read_text())
    document["manifest"]["nodes"][0]["address"] = "evil.example:7001"
    path.write_text(json.dumps(document))
    code, _, err = run_admin("manifest", "verify", str(path), "--operator-key", public)
    assert code == 2 and "signature is invalid" in err
    # Re-signed by someone else: refused when the operator key is pinned.
    other = OperatorKey.generate()
    from pakr.proto.manifest import parse_manifest, sign_manifest

    forged = sign_manifest(parse_manifest(document["manifest"]), other)
    path.write_text(json.dumps(forged))
    code, _, err = run_admin("manifest", "verify", str(path), "--operator-key", public)
    assert code == 2 and "different operator key" in err


def test_coordinator_config_roundtrip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.toml"
    written = CoordinatorConfig(
        path=path,
        listen="127.0.0.1:7000",
        manifest=tmp_path / "manifest.json",
        insecure=False,
        tls_cert=tmp_path / "tls" / "c.crt",
        tls_key=tmp_path / "tls" / "c.key",
        canary=CanaryConfig(tmp_path / "canary.key"),
        metrics_listen="127.0.0.1:9200",
    )
    written.save()
    assert 'manifest = "manifest.json"' in path.read_text()  # relative: the folder can move
    config = load_config(path)
    assert config == written
    assert config.manifest == tmp_path / "manifest.json"
    assert config.tls_cert == tmp_path / "tls" / "c.crt"
    assert config.canary is not None and config.canary.user_id == "pakr-canary"
    assert config.metrics_listen == "127.0.0.1:9200"

    path.write_text('[coordinator]\nlisten = "0.0.0.0:7000"\nmanifest = "m"\ninsecure = true\n')
    with pytest.raises(ConfigError, match="loopback"):
        load_config(path)
    path.write_text('[coordinator]\nlisten = "127.0.0.1:7000"\nmanifest = "m"\n')
    with pytest.raises(ConfigError, match=r"tls\.cert"):
        load_config(path)
    path.write_text('[coordinator]\nlisten = "127.0.0.1:7000"\nmanifest = "m"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)
    path.write_text("not toml [")
    with pytest.raises(ConfigError, match="TOML"):
        load_config(path)
    assert os.path.exists(path)


def test_tls_create_names_hosts_and_refuses_overwrite(tmp_path: Path) -> None:
    from cryptography import x509

    cert, key = tmp_path / "n.crt", tmp_path / "n.key"
    code, out, err = run_admin(
        "tls", "create", "--cert", str(cert), "--key", str(key),
        "--host", "node1.example.com", "--host", "10.0.0.7",
    )  # fmt: skip
    assert code == 0, err
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    addresses = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert {"node1.example.com", "localhost"} <= names
    assert {"10.0.0.7", "127.0.0.1"} <= addresses
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    from pakr.proto.manifest import cert_fingerprint

    assert json.loads(out)["sha256"] == cert_fingerprint(cert.read_text()).hex()
    code, _, err = run_admin("tls", "create", "--cert", str(cert), "--key", str(key))
    assert code == 2 and "--force" in err


def test_coordinator_init_writes_a_loadable_config(tmp_path: Path) -> None:
    code, out, err = run_admin(
        "coordinator", "init", "--dir", str(tmp_path / "c"), "--listen", "127.0.0.1:7000",
        "--manifest", str(tmp_path / "manifest.json"), "--canary-key", str(tmp_path / "k"),
    )  # fmt: skip
    assert code == 0, err
    config = load_config(Path(json.loads(out)["config"]))
    assert config.tls_cert is not None and config.tls_cert.exists()
    assert config.canary is not None and config.canary.tenant_key == tmp_path / "k"
    code, _, err = run_admin(
        "coordinator", "init", "--dir", str(tmp_path / "c"), "--listen", "127.0.0.1:7000",
        "--manifest", str(tmp_path / "manifest.json"),
    )  # fmt: skip
    assert code == 2 and "--force" in err


def test_probe_reports_a_dead_address(tmp_path: Path) -> None:
    from pakr.coordinator.localcluster import free_ports

    (port,) = free_ports(1)
    code, out, _ = run_admin("probe", "--address", f"127.0.0.1:{port}", "--timeout", "1")
    assert code == 1
    report = json.loads(out)
    assert report["serving"] is False and "UNAVAILABLE" in report["error"]
