"""The built image: what it runs as, what it installed, how fast it starts, and that no layer
holds a key (the image is pushed to registries; a node's keys must only ever arrive at run
time, through volumes or Secrets)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import time
from typing import Any

from tests.deploy_live.dockerctl import IMAGE, NODE_UID, ROOT, docker

# What a key looks like in a file: PEM private keys, and pakr's own key files (JSON with a
# private part, or a bare 32-byte hex data key in a file named like one).
PRIVATE_PEM = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )?PRIVATE KEY-----")
PAKR_KEY_JSON = re.compile(rb'"(?:private_key|secret_key|seed)"\s*:')
KEY_NAMES = re.compile(r"(?:^|/)(?:[^/]*\.key|[^/]*\.pem|id_[a-z0-9]+|[^/]*\.db(?:-wal|-shm)?)$")
# Public certificate bundles are fine (they are named .pem and hold no private key).
PUBLIC_PEM_OK = re.compile(r"(?:^|/)(?:cacert|roots|ca-certificates|ca-bundle)[^/]*\.pem$")


def _layers() -> list[tuple[str, tarfile.TarFile]]:
    """Every layer of the image as an open tar, in order (via ``docker save``)."""
    raw = subprocess.run(
        ["docker", "save", IMAGE], capture_output=True, timeout=300, check=True
    ).stdout
    outer = tarfile.open(fileobj=io.BytesIO(raw))
    manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
    layers = []
    for name in manifest[0]["Layers"]:
        member = outer.extractfile(name)
        assert member is not None
        layers.append((name, tarfile.open(fileobj=io.BytesIO(member.read()))))
    return layers


def test_no_layer_holds_a_key_or_a_database(report: dict[str, Any]) -> None:
    findings: list[str] = []
    files = 0
    layers = _layers()
    for layer, tar in layers:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            files += 1
            path = member.name
            if KEY_NAMES.search(path) and not PUBLIC_PEM_OK.search(path):
                findings.append(f"{layer}: {path} (named like a key or database)")
            if member.size > 4 << 20:
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if PRIVATE_PEM.search(data):
                findings.append(f"{layer}: {path} (a PEM private key)")
            elif path.endswith(".json") and PAKR_KEY_JSON.search(data):
                findings.append(f"{layer}: {path} (a key file)")
    assert files > 1000  # the scan saw the image, not an empty tar
    assert findings == [], "\n".join(findings)
    report["image layers scanned for keys"] = f"{len(layers)} layers, {files} files, none found"


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
        docker("run", "--rm", "--read-only", "--network", "none", IMAGE, "--help")
        timings.append(time.monotonic() - start)
    report["container cold start (docker run --rm pakr --help), best of 3, s"] = round(
        min(timings), 2
    )


def test_image_installed_exactly_the_lock(report: dict[str, Any]) -> None:
    """Every distribution in the image is pinned by deploy/requirements.lock (or is pakr)."""
    pins = dict(
        re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "deploy" / "requirements.lock").read_text(),
                   flags=re.MULTILINE)
    )  # fmt: skip
    pins = {_norm(k): v for k, v in pins.items()}
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

