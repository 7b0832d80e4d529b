"""The built image: what it runs as, what it installed, how fast it starts, and that no layer
holds a key (the image is pushed to registries; a node's keys must only ever arrive at run
time, through volumes or Secrets)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import time
from typing import Any

from tests.deploy_live.dockerctl import IMAGE, NODE_UID, ROOT, docker

# What a key looks like in a file: a whole PEM private-key block, pakr's own key files (JSON with
# a private part), and files named like keys or databases.
PRIVATE_PEM = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\s+"
    rb"[A-Za-z0-9+/=\s:,-]{40,}?-----END [A-Z0-9 ]*PRIVATE KEY"
)
PAKR_KEY_JSON = re.compile(rb'"(?:private_key|secret_key|seed)"\s*:')
KEY_NAMES = re.compile(r"(?:^|/)(?:[^/]*\.key|id_(?:rsa|ecdsa|ed25519)|[^/]*\.db(?:-wal|-shm)?)$")
SITE = "opt/pakr/lib/python3.11/site-packages/"


def _saved_image() -> tuple[list[str], list[tarfile.TarFile]]:
    """The image's layer diff ids and layers (open tars), in order, via ``docker save``."""
    raw = subprocess.run(
        ["docker", "save", IMAGE], capture_output=True, timeout=300, check=True
    ).stdout
    outer = tarfile.open(fileobj=io.BytesIO(raw))  # noqa: SIM115 (in memory, nothing to close)
    (manifest,) = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
    config = json.load(outer.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    layers = []
    for name in manifest["Layers"]:
        member = outer.extractfile(name)
        assert member is not None
        layers.append(tarfile.open(fileobj=io.BytesIO(member.read())))  # noqa: SIM115
    return list(config["rootfs"]["diff_ids"]), layers


def _base_layer_count(diff_ids: list[str]) -> int:
    """How many of the image's layers are its base image's (PAKR_DEPLOY_BASE, when given)."""
    base = os.environ.get("PAKR_DEPLOY_BASE")
    if not base:
        return 0
    (info,) = json.loads(docker("image", "inspect", base))
    base_ids = list(info["RootFS"]["Layers"])
    assert diff_ids[: len(base_ids)] == base_ids, "the image is not built on PAKR_DEPLOY_BASE"
    return len(base_ids)


def _wheel_records(layers: list[tarfile.TarFile]) -> dict[str, str]:
    """site-packages path -> sha256 (urlsafe base64) from every installed dist's RECORD: the
    files as they came out of the hash-pinned wheels."""
    records: dict[str, str] = {}
    for tar in layers:
        for member in tar.getmembers():
            if (
                member.isfile()
                and member.name.startswith(SITE)
                and member.name.endswith(".dist-info/RECORD")
            ):
                text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                for row in csv.reader(text.splitlines()):
                    if len(row) >= 2 and row[1].startswith("sha256="):
                        records[SITE + row[0]] = row[1].removeprefix("sha256=")
    return records


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _read(layers: list[tarfile.TarFile], path: str) -> bytes | None:
    for tar in reversed(layers):
        for name in (path, "./" + path):
            try:
                member = tar.getmember(name)
            except KeyError:
                continue
            handle = tar.extractfile(member)
            return handle.read() if handle else None
    return None


def _from_wheel(
    path: str, data: bytes, records: dict[str, str], layers: list[tarfile.TarFile]
) -> bool:
    """The file is what a hash-pinned wheel shipped, or bytecode pip compiled from such a file
    (RECORD lists .pyc files without a hash)."""
    if records.get(path) == _digest(data):
        return True
    compiled = re.match(r"^(.*)/__pycache__/([^/.]+)\.cpython-\d+\.pyc$", path)
    if compiled:
        source = f"{compiled.group(1)}/{compiled.group(2)}.py"
        text = _read(layers, source)
        return text is not None and records.get(source) == _digest(text)
    return False


def test_no_layer_holds_a_key_or_a_database(report: dict[str, Any]) -> None:
    """Every layer pakr adds on top of the base image is scanned. Key-like content inside a
    dependency is accepted only when the file is byte-for-byte what its hash-pinned wheel
    shipped (pycryptodome's self-test vectors, public in its release)."""
    diff_ids, layers = _saved_image()
    ours = layers[_base_layer_count(diff_ids) :]
    records = _wheel_records(ours)
    findings: list[str] = []
    files = from_wheels = 0
    for tar in ours:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            files += 1
            path = member.name.removeprefix("./")
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            why = None
            if KEY_NAMES.search(path):
                why = "named like a key or database"
            elif PRIVATE_PEM.search(data):
                why = "a PEM private key"
            elif path.endswith(".json") and PAKR_KEY_JSON.search(data):
                why = "a key file"
            if why is None:
                continue
            if _from_wheel(path, data, records, ours):
                from_wheels += 1
                continue
            findings.append(f"{path} ({why})")
    assert files > 1000  # the scan saw the installed packages, not an empty tar
    assert findings == [], "\n".join(findings)
    report["image layers scanned for keys"] = (
        f"{len(ours)} layers added on the base, {files} files; no key or database; "
        f"{from_wheels} files with test keys are verbatim from hash-pinned wheels"
    )


def test_image_runs_pakr_as_the_unprivileged_user(report: dict[str, Any]) -> None:
    (info,) = json.loads(docker("image", "inspect", IMAGE))
    config = info["Config"]
    assert config["User"] == f"{NODE_UID}:{NODE_UID}"
    assert config["Entrypoint"] == ["pakr"]
    report["image size, MB"] = round(info["Size"] / 1e6, 1)
    out = docker("run", "--rm", "--read-only", "--entrypoint", "id", IMAGE)
    assert out.startswith(f"uid={NODE_UID}(pakr) gid={NODE_UID}(pakr)"), out
    # Cold start: a fresh container up to pakr's parsed command line (interpreter, imports).
    timings = []
    for _ in range(3):
        start = time.monotonic()
        docker(
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/tmp:exec",
            "--network",
            "none",
            IMAGE,
            "--help",
        )
        timings.append(time.monotonic() - start)
    report["container cold start (docker run --rm pakr --help), best of 3, s"] = round(
        min(timings), 2
    )


def test_image_installed_exactly_the_lock(report: dict[str, Any]) -> None:
    """Every distribution in the image is pinned by deploy/requirements.lock (or is pakr)."""
    lock = (ROOT / "deploy" / "requirements.lock").read_text()
    found = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", lock, flags=re.MULTILINE)
    pins = {_norm(k): v for k, v in found}
    listing = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python", IMAGE, "-c",
        "import importlib.metadata as m; import json; print(json.dumps("
        "{d.metadata['Name']: d.version for d in m.distributions()}))",
    )  # fmt: skip
    installed = {_norm(k): v for k, v in json.loads(listing).items()}
    assert installed.pop("pakr") == _project_version()
    assert "pip" not in installed and "setuptools" not in installed
    assert installed == {k: v for k, v in pins.items() if k in installed}
    missing = set(pins) - set(installed) - {"tzdata"}  # tzdata: Windows only
    assert missing == set(), missing
    report["distributions in the image"] = len(installed) + 1


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_version() -> str:
    import tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
