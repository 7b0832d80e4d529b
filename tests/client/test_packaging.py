"""``pip install pakr`` is the SDK alone; the servers need ``pakr[node]`` and say so.

A base install is simulated in a subprocess whose import system refuses the server packages
(the ``node`` extra's modules), so the suite needs no second virtualenv; the same checks
were run by hand in a fresh venv holding only the wheel and its base dependencies.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pakr.node.extras import INSTALL_HINT, SERVER_MODULES

ROOT = Path(__file__).resolve().parents[2]

BLOCK = f"""
import importlib.abc, sys
BLOCKED = {sorted(SERVER_MODULES)!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_sdk_imports_and_recovers_without_the_server_packages() -> None:
    done = _run(
        """
import importlib, pkgutil
import pakr, pakr.errors, pakr.testing
for name in pakr.__all__:
    getattr(pakr, name)
sdk = []
for top in pkgutil.iter_modules(pakr.__path__, "pakr."):
    if top.name in ("pakr.node", "pakr.coordinator"):
        continue  # the servers: they need the node extra
    module = importlib.import_module(top.name)
    sdk.append(top.name)
    if top.ispkg:
        sdk += [m.name for m in pkgutil.walk_packages(module.__path__, top.name + ".")]
for name in sdk:
    importlib.import_module(name)
with pakr.testing.FakeCluster(n=3, t=2) as cluster:
    client = cluster.client()
    client.register("base", "pw", b"secret")
    assert client.recover("base", "pw") == b"secret"
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED or
                m.startswith(("pakr.node", "pakr.coordinator")))
assert not loaded, loaded
print(len(sdk), "modules")
"""
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) > 30  # pakr.* and pakr.proto.* were all imported


def test_server_entry_points_say_to_install_the_node_extra() -> None:
    runs = {
        "pakr": "sys.argv = ['pakr', 'cluster', 'status']\n"
        "from pakr.coordinator.entry import run\nrun()",
        "python -m pakr.node": "import runpy\nsys.argv = ['pakr.node', 'serve']\n"
        "runpy.run_module('pakr.node', run_name='__main__')",
    }
    for label, code in runs.items():
        done = _run(code)
        assert done.returncode == 2, (label, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (label, done.stderr)
        assert INSTALL_HINT in lines[0] and "Traceback" not in done.stderr, label


def test_server_modules_are_the_node_extra() -> None:
    """Every module the hint knows comes from the ``node`` extra, and every distribution of
    the extra is known: a server dependency added without updating the hint fails here."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["node"]
    wanted = set()
    for text in extra:
        requirement = Requirement(text)
        wanted.add(canonicalize_name(requirement.name))
        if requirement.name == "psycopg" and "pool" in requirement.extras:
            wanted.add("psycopg-pool")
    providers = packages_distributions()
    known = set()
    for module, distribution in SERVER_MODULES.items():
        assert canonicalize_name(distribution) in wanted, module
        assert canonicalize_name(distribution) in {
            canonicalize_name(d) for d in providers.get(module, [])
        }, module
        known.add(canonicalize_name(distribution))
    assert known == wanted
    base = {canonicalize_name(Requirement(t).name) for t in pyproject["project"]["dependencies"]}
    assert base.isdisjoint(wanted)
    assert "psycopg" not in base and "prometheus-client" not in base
