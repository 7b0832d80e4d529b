"""Every example in ``examples/`` runs to success against a real local cluster (3-of-5), also
with pakr installed from the wheel, and needs nothing beyond pakr's dependencies and its
``examples`` extra."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pakr.coordinator.localcluster import LocalCluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(120)


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


def _declared(extra: str | None) -> set[str]:
    """Distribution names pakr requires (in ``extra``, or unconditionally)."""
    names = set()
    for requirement in importlib.metadata.requires("pakr") or []:
        name = re.split(r"[ ;<>=!\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        in_extra = f'extra == "{extra}"' in requirement if extra else "extra ==" not in requirement
        if in_extra:
            names.add(name)
    return names


def test_examples_need_only_declared_dependencies() -> None:
    allowed = _declared(None) | _declared("examples")
    providers = importlib.metadata.packages_distributions()
    for script in sorted(EXAMPLES.glob("*.py")):
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "pakr" or top in sys.stdlib_module_names:
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [])}
                assert dists & allowed, f"{script.name} imports {top}, not a declared dependency"


def test_examples_run_from_the_wheel(cluster: LocalCluster, built_wheel: tuple[Path, Path]) -> None:
    _, target = built_wheel
    site = [p for p in sys.path if "__editable__" not in p and p and "site-packages" in p]
    env_path = ":".join([str(target), *site])
    proc = subprocess.run(
        [
            sys.executable, "-I", "-c",
            "import runpy, sys; sys.path[:0] = sys.argv[1].split(':'); import pakr;"
            " assert pakr.__file__.startswith(sys.argv[1].split(':')[0]), pakr.__file__;"
            " sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')",
            env_path, str(EXAMPLES / "pq_kem_seed.py"),
            "--manifest", str(cluster.manifest_path), "--token-key", str(cluster.tenant_key_path),
            "--operator-key", cluster.operator_public_key(), "--user", "from-the-wheel",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "decapsulation matches" in proc.stdout
