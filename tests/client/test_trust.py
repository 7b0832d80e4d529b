"""The SDK trusts a manifest only from its pinned operator, and never goes back in serial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pakr
from pakr._trust import SerialState, UnpinnedManifestWarning, load_trusted_manifest
from pakr.proto.errors import ConfigError
from pakr.proto.hpke import HpkePrivateKey
from pakr.proto.kdf import DEV_ARGON2
from pakr.proto.manifest import ManifestNode, OperatorKey, new_manifest, sign_manifest


def _document(operator: OperatorKey, serial: int = 1, port: int = 7000) -> dict[str, Any]:
    hpke = HpkePrivateKey.from_seed(bytes(32)).public
    nodes = [
        ManifestNode(bytes([i]) * 16, i, f"127.0.0.1:{port + i}", hpke_public_key=hpke)
        for i in (1, 2, 3)
    ]
    manifest = new_manifest(
        cluster_id="c", nodes=nodes, threshold=2, argon2=DEV_ARGON2, dev=True, serial=serial
    )
    return sign_manifest(manifest, operator)


def _client(document: dict[str, Any], **kwargs: Any) -> pakr.Client:
    return pakr.Client.from_manifest(
        document, tenant="t", token_provider=lambda user, audience: "x", **kwargs
    )


def test_a_manifest_without_a_pin_is_refused() -> None:
    with pytest.raises(ConfigError, match="no operator key pinned"):
        _client(_document(OperatorKey.generate()))


def test_a_manifest_re_signed_by_another_key_is_refused() -> None:
    operator, attacker = OperatorKey.generate(), OperatorKey.generate()
    genuine = _document(operator)
    forged = _document(attacker, port=9000)  # same cluster id, the attacker's addresses
    _client(genuine, operator_key=operator.public_key_text).close()
    with pytest.raises(ConfigError, match="different operator key"):
        _client(forged, operator_key=operator.public_key_text)
    forged["signature"]["public_key"] = operator.public_key_text
    with pytest.raises(ConfigError, match="signature is invalid"):
        _client(forged, operator_key=operator.public_key_text)


def test_unpinned_is_explicit_and_loud() -> None:
    with pytest.warns(UnpinnedManifestWarning, match="not pinned"):
        client = _client(_document(OperatorKey.generate()), operator_key=pakr.INSECURE_UNPINNED)
    client.close()


def test_serial_state_refuses_a_rollback(tmp_path: Path) -> None:
    operator = OperatorKey.generate()
    state = tmp_path / "serials.json"
    pin = operator.public_key_text
    _client(_document(operator, serial=3), operator_key=pin, serial_state=state).close()
    assert SerialState(state).highest(pin) == 3
    assert state.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="rollback"):
        _client(_document(operator, serial=2), operator_key=pin, serial_state=state)
    _client(_document(operator, serial=3), operator_key=pin, serial_state=state).close()
    _client(_document(operator, serial=5), operator_key=pin, serial_state=state).close()
    assert SerialState(state).highest(pin) == 5
    # Another operator key has its own history.
    other = OperatorKey.generate()
    other_pin = other.public_key_text
    _client(_document(other, serial=1), operator_key=other_pin, serial_state=state).close()
    # min_serial without state
    with pytest.raises(ConfigError, match="rollback"):
        _client(_document(operator, serial=4), operator_key=pin, min_serial=5)


def test_a_damaged_serial_state_is_an_error_not_a_reset(tmp_path: Path) -> None:
    operator = OperatorKey.generate()
    state = tmp_path / "serials.json"
    for damage in ("{not json", json.dumps({"format": "x", "serials": {}}), "[]"):
        state.write_text(damage)
        with pytest.raises(ConfigError, match="damaged"):
            load_trusted_manifest(
                _document(operator), operator_key=operator.public_key_text, serial_state=state
            )


def test_serial_state_survives_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    code = "import sys; from pakr._trust import SerialState as S\n"
    code += "S(sys.argv[1]).record('k', int(sys.argv[2]))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(serial)])
        for serial in range(1, 9)
    ]
    assert all(proc.wait(timeout=60) == 0 for proc in procs)
    assert SerialState(path).highest("k") == 8


def test_an_unwritable_state_place_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="serial state"):
        SerialState(blocker / "sub" / "s.json").highest("k")
