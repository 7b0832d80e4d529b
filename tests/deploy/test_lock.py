"""deploy/requirements.lock covers what pyproject.toml asks for, every pin carries hashes, and the
recipes install from it (Dockerfile, systemd). ``make lock`` refreshes the files.

Offline and fast: the lock is read, not resolved. That the lock is closed under dependencies
(no package missing) is also proven for real by ``pip install --require-hashes`` in the image
build of ``make deploy-test``, which refuses any unpinned package.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The platform the lock serves: Linux servers on CPython 3.11 (the image's Python).
SERVER = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "python_version": "3.11", "os_name": "posix"}  # fmt: skip
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _parse_lock(path: Path) -> dict[str, tuple[str, str | None, list[str]]]:
    """name -> (version, marker, hashes) for every pin of a pip-compile style lock."""
    pins: dict[str, tuple[str, str | None, list[str]]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        found = PIN.match(line)
        if found:
            current = canonicalize_name(found.group(1))
            assert current not in pins, f"{current} pinned twice in {path.name}"
            pins[current] = (found.group(2), found.group(3), [])
            continue
        hashed = re.match(r"^\s+--hash=sha256:([0-9a-f]{64})\s*\\?$", line)
        if hashed:
            assert current is not None, line
            pins[current][2].append(hashed.group(1))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"unexpected line in {path.name}: {line!r}")
    return pins


RUNTIME = _parse_lock(DEPLOY / "requirements.lock")
BUILD = _parse_lock(DEPLOY / "requirements-build.lock")


def _needed(requirement: Requirement, extra: str = "") -> bool:
    marker = requirement.marker
    return marker is None or marker.evaluate({**SERVER, "extra": extra})


def _requirements_of(name: str, extras: set[str]) -> list[Requirement]:
    """The requirements of an installed distribution under ``extras`` (on a Linux server)."""
    requirements = []
    for text in importlib.metadata.requires(name) or []:
        requirement = Requirement(text)
        if _needed(requirement) or any(_needed(requirement, e) for e in extras):
            requirements.append(requirement)
    return requirements


def test_every_pin_is_exact_and_hashed() -> None:
    assert RUNTIME and BUILD
    for name, (version, _, hashes) in {**RUNTIME, **BUILD}.items():
        assert hashes, f"{name}=={version} has no --hash: pip --require-hashes would refuse it"
        assert len(set(hashes)) == len(hashes)


def test_lock_pins_every_runtime_dependency_of_pyproject() -> None:
    """Each ``[project].dependencies`` entry and each of the server extra (``node``), with
    their extras, is pinned at a version it allows."""
    missing, outside = [], []
    project = PYPROJECT["project"]
    for text in [*project["dependencies"], *project["optional-dependencies"]["node"]]:
        requirement = Requirement(text)
        if not _needed(requirement):
            continue
        wanted = [requirement]
        # Extras (PyJWT[crypto], psycopg[binary,pool]) add packages of their own.
        if requirement.extras:
            wanted += [
                r for r in _requirements_of(requirement.name, set(requirement.extras))
                if r.marker is not None and "extra" in str(r.marker)
            ]  # fmt: skip
        for want in wanted:
            name = canonicalize_name(want.name)
            if name not in RUNTIME:
                missing.append(str(want))
            elif not want.specifier.contains(RUNTIME[name][0], prereleases=True):
                outside.append(f"{want} but the lock pins {RUNTIME[name][0]}")
    assert not missing and not outside, f"run `make lock`: missing {missing}, outside {outside}"


def test_lock_is_closed_where_this_environment_can_tell() -> None:
    """For every locked package installed here at the locked version, its own requirements (on a
    Linux server) are locked too, at versions they allow."""
    checked = 0
    problems = []
    for name, (version, _, _) in RUNTIME.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if installed != version:
            continue
        checked += 1
        for requirement in _requirements_of(name, set()):
            dep = canonicalize_name(requirement.name)
            if dep not in RUNTIME:
                problems.append(f"{name} needs {requirement}, which the lock does not pin")
            elif not requirement.specifier.contains(RUNTIME[dep][0], prereleases=True):
                problems.append(f"{name} needs {requirement}; the lock pins {RUNTIME[dep][0]}")
    assert checked >= 5, "too few locked versions installed here to check anything"
    assert not problems, "run `make lock`: " + "; ".join(problems)


def test_lock_holds_nothing_but_runtime_dependencies() -> None:
    """Dev tools (pytest, ruff, ...) never reach a server through the lock."""
    dev = {canonicalize_name(Requirement(r).name) for r in
           PYPROJECT["project"]["optional-dependencies"]["dev"]}  # fmt: skip
    assert dev.isdisjoint(RUNTIME), dev & set(RUNTIME)
    assert "pakr" not in RUNTIME  # the wheel is installed on top, with --no-deps


def test_build_lock_satisfies_build_system() -> None:
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in BUILD, f"run `make lock`: {text} is not in requirements-build.lock"
        assert requirement.specifier.contains(BUILD[name][0])


@pytest.mark.parametrize("path", ["requirements.lock", "requirements-build.lock"])
def test_lock_says_how_it_was_made(path: str) -> None:
    text = (DEPLOY / path).read_text()
    assert "make lock" in text.splitlines()[1]


def test_recipes_install_from_the_lock() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/requirements.lock deploy/requirements-build.lock" in dockerfile
    for lock in ("requirements.lock", "requirements-build.lock"):
        assert re.search(rf"--require-hashes[^\n]*\n?[^\n]*-r /locks/{re.escape(lock)}", dockerfile)
    assert re.search(r"pip install --no-index --find-links /wheels --require-hashes", dockerfile)
    assert re.search(r"pip install --no-index --no-deps /wheels/pakr-\*\.whl", dockerfile)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!deploy/requirements.lock" in ignore and "!deploy/requirements-build.lock" in ignore
    # The classic builder (no BuildKit) reads /.dockerignore: the same allow-list.
    assert (ROOT / ".dockerignore").read_text() == (DEPLOY / "Dockerfile.dockerignore").read_text()
    readme = (DEPLOY / "README.md").read_text()
    systemd = readme.split("## systemd", 1)[1].split("\n## ", 1)[0]
    assert "pip install --require-hashes -r requirements.lock" in systemd
    assert "--no-deps" in systemd
