"""Every example in ``examples/`` runs to success against a real local cluster (3-of-5)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pakr.coordinator.localcluster import LocalCluster

ClusterFactory = Callable[..., LocalCluster]  # module_local_cluster (tests/conftest.py)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(module_local_cluster: ClusterFactory) -> LocalCluster:
    return module_local_cluster(nodes=5, threshold=3)


def run_in_process(script: str, args: list[str]) -> int:
    """Import an example from its file and call its ``main`` (no interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(f"example_{script[:-3]}", EXAMPLES / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code: int = module.main(args)
    return code


def test_an_example_runs_as_a_script(cluster: LocalCluster) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "e2ee_keypair.py"),
            "--manifest",
            str(cluster.manifest_path),
            "--token-key",
            str(cluster.tenant_key_path),
            "--operator-key",
            cluster.operator_public_key(),
            "--user",
            "script-run",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "same keys, old messages decrypt" in proc.stdout


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        ("e2ee_keypair.py", "same keys, old messages decrypt"),
        ("password_vault.py", "swaps detected"),
        ("pq_kem_seed.py", "decapsulation matches"),
        (
            "keystore_parameter_attack.py",
            "refused (argon2 memory_kib=64 is below the floor 19456)",
        ),
        ("keystore_parameter_attack.py", "no guess was spent"),
    ],
)
def test_example_runs(
    cluster: LocalCluster, script: str, expect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    user = f"{script[:-3]}-{abs(hash(expect)) % 10_000}"
    args = ["--manifest", str(cluster.manifest_path), "--token-key", str(cluster.tenant_key_path)]
    args += ["--operator-key", cluster.operator_public_key()]
    assert run_in_process(script, [*args, "--user", user]) == 0
    assert expect in capsys.readouterr().out
