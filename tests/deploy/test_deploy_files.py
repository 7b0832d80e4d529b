"""Offline checks of deploy/: every file parses, the facts the README promises hold, and every
``pakr`` command line in them is accepted by the real CLI parser (so a renamed flag breaks here,
not in someone's cluster). The compose init script runs for real against a temp directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from pakr.coordinator.cli import build_parser
from pakr.coordinator.config import load_config as load_coordinator_config
from pakr.node.config import load_config as load_node_config
from pakr.node.config import parse_config, sqlite_path
from pakr.proto.manifest import load_manifest
from tests.deploy.test_k8s_schemas import validate_documents

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NODE_UID = 10001


def _accepts(argv: list[str]) -> None:
    """The real ``pakr`` parser accepts ``argv`` and resolves it to a command."""
    args = build_parser().parse_args(argv)
    assert callable(getattr(args, "func", None)), argv


def _load_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pakr_k8s_bootstrap", DEPLOY / "k8s" / "bootstrap.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_is_multistage_and_runs_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\w+))?", text, flags=re.MULTILINE)
    assert len(stages) >= 2 and "build" in stages and "runtime" in stages
    assert "COPY --from=build" in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] == f"{NODE_UID}:{NODE_UID}"
    # The last stage (what runs) has no build toolchain and ends as the unprivileged user.
    runtime = text.split("AS runtime", 1)[1]
    assert "build-essential" not in runtime
    assert re.search(r'^ENTRYPOINT \["pakr"\]', runtime, flags=re.MULTILINE)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**") :] and "!coordinator/**" in ignore  # allow-list style
    # Everything the build stage copies exists in the repository (a glob such as
    # deploy/wheelhous[e] is optional on purpose: it may match nothing).
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, flags=re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists() or "[" in item, item


# -- docker compose ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def test_compose_services_are_hardened_and_healthchecked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"init", "coordinator", *(f"node{i}" for i in range(1, 6))}
    volumes_seen: set[str] = set()
    for i in range(1, 6):
        node = services[f"node{i}"]
        assert node["user"] == f"{NODE_UID}:{NODE_UID}"
        assert node["read_only"] is True and node["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in node["security_opt"]
        assert node["depends_on"]["init"]["condition"] == "service_completed_successfully"
        _accepts(node["command"])
        assert node["command"][-1] == f"/var/lib/pakr/node{i}/node.toml"
        # Each node sees its own volume only (no node can read another's data key).
        mounts = [m.split(":")[0] for m in node["volumes"]]
        assert mounts == [f"node{i}"]
        volumes_seen.update(mounts)
        # Published on loopback only, at the address the manifest names.
        assert f"127.0.0.1:700{i}:700{i}" in node["ports"]
        assert all(p.startswith("127.0.0.1:") for p in node["ports"])
        check = node["healthcheck"]["test"]
        assert check[0] == "CMD"
        _accepts(check[1:][1:])  # drop "pakr"
        assert f"127.0.0.1:700{i}" in check and f"/var/lib/pakr/node{i}/tls/node.crt" in check
    assert volumes_seen == {f"node{i}" for i in range(1, 6)}
    assert set(compose["volumes"]) >= volumes_seen | {"keys", "out", "coordinator"}
    coordinator = services["coordinator"]
    _accepts(coordinator["command"])
    _accepts(coordinator["healthcheck"]["test"][2:])
    assert not any(m.startswith("keys:") for m in coordinator["volumes"])  # no operator key
    assert all(m.endswith(":ro") for m in coordinator["volumes"])
    init = services["init"]
    assert init["restart"] == "no"
    assert "./compose/init.sh:/opt/pakr/init.sh:ro" in init["volumes"]
    assert (DEPLOY / "compose" / "init.sh").exists()


SAMPLE_VALUES = {"THRESHOLD": "3", "i": "1", "configs": "a/node.toml b/node.toml",
                 "addresses": "--address 1=127.0.0.1:7001"}  # fmt: skip


def _init_commands() -> Iterator[list[str]]:
    """Every ``pakr ...`` command in init.sh, with shell variables replaced by sample values."""
    text = (DEPLOY / "compose" / "init.sh").read_text().replace("\\\n", " ")
    text = re.sub(r"\$\((\w+) [^)]*\)", "X", text)
    text = re.sub(r"\$\{?(\w+)\}?", lambda m: SAMPLE_VALUES.get(m.group(1), "X"), text)
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        for part in re.findall(r"(?:^|\|\| )(pakr [^>]+?)\s*(?:>|$)", line):
            yield shlex.split(part)[1:]


def test_compose_init_script_commands_parse() -> None:
    commands = list(_init_commands())
    assert {c[0] for c in commands} >= {"manifest", "tenant", "node", "coordinator"}
    for argv in commands:
        _accepts(argv)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run deploy/compose/init.sh for real (pakr from this interpreter's environment)."""
    root = tmp_path_factory.mktemp("compose")
    data, out = root / "data", root / "out"
    data.mkdir()
    out.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PAKR_DATA_ROOT": str(data),
        "PAKR_OUT": str(out),
        "PAKR_TENANT": "demo",
    }
    done = subprocess.run(
        ["sh", str(DEPLOY / "compose" / "init.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "operator public key" in done.stdout
    again = subprocess.run(
        ["sh", str(DEPLOY / "compose" / "init.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "already initialised" in again.stdout
    return data, out


def test_compose_init_creates_a_consistent_cluster(initialised: tuple[Path, Path]) -> None:
    data, out = initialised
    operator = json.loads((data / "keys" / "operator.key").read_text())["public_key"]
    manifest = load_manifest(out / "manifest.json", operator_key=operator)
    assert manifest.threshold == 3 and len(manifest.nodes) == 5 and not manifest.dev
    assert [n.address for n in manifest.nodes] == [f"127.0.0.1:700{i}" for i in range(1, 6)]
    canary = json.loads((data / "coordinator" / "canary.key").read_text())
    demo = json.loads((out / "demo.key").read_text())
    assert (out / "demo.key").stat().st_mode & 0o077 == 0
    assert (out / "manifest.json").stat().st_mode & 0o044 == 0o044  # public
    for node in manifest.nodes:
        config = load_node_config(data / f"node{node.index}" / "node.toml")
        assert config.node_id == node.node_id and config.listen == f"0.0.0.0:700{node.index}"
        assert config.tenants == {"demo:1": demo["public_key"], "canary:1": canary["public_key"]}
        assert config.tls_cert is not None
        assert node.tls_cert_pem == config.tls_cert.read_text()
        assert (data / f"node{node.index}" / "keys" / "data.key").stat().st_mode & 0o077 == 0
    coordinator = load_coordinator_config(data / "coordinator" / "coordinator.toml")
    assert coordinator.manifest == out / "manifest.json"
    assert coordinator.canary is not None
    assert coordinator.canary.tenant_key == data / "coordinator" / "canary.key"


# -- Kubernetes ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "pakr-nodes.yaml").read_text()) if d]
    return docs


def test_k8s_objects(k8s: list[dict[str, Any]]) -> None:
    kinds = [d["kind"] for d in k8s]
    assert kinds.count("StatefulSet") == 5 and kinds.count("Service") == 5
    assert {"Namespace", "PodDisruptionBudget", "NetworkPolicy"} <= set(kinds)
    assert all(d["apiVersion"] for d in k8s)
    namespace = next(d for d in k8s if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(d["metadata"].get("namespace") == "pakr" for d in k8s if d["kind"] != "Namespace")


def test_k8s_statefulsets_one_per_identity_hardened_probed(k8s: list[dict[str, Any]]) -> None:
    bootstrap = _load_bootstrap()
    sets = {d["metadata"]["name"]: d for d in k8s if d["kind"] == "StatefulSet"}
    services = {d["metadata"]["name"]: d for d in k8s if d["kind"] == "Service"}
    assert set(sets) == {f"pakr-node-{i}" for i in range(1, 6)} == set(services)
    indices = set()
    for name, sts in sets.items():
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"] == labels
        indices.add(labels["pakr.dev/node-index"])
        assert services[name]["spec"]["selector"] == labels
        assert spec["replicas"] == 1
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == NODE_UID
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert (
            container["resources"]["requests"]["cpu"]
            and container["resources"]["requests"]["memory"]
        )
        assert container["resources"]["limits"]["memory"]
        _accepts(container["args"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            assert command[0] == "pakr"
            _accepts(command[1:])
            assert bootstrap.IN_POD["cert"] in command
        # Secrets are mounted (read-only) where the generated node.toml looks for them.
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert volumes["tls"]["secret"]["secretName"] == f"{name}-tls"
        assert volumes["data-key"]["secret"]["secretName"] == f"{name}-data-key"
        assert volumes["hpke-key"]["secret"]["secretName"] == f"{name}-hpke-key"
        assert volumes["hpke-key"]["secret"]["defaultMode"] == 0o400  # the node refuses more
        assert volumes["config"]["configMap"]["name"] == f"{name}-config"
        for volume in ("tls", "data-key", "hpke-key", "config"):
            assert mounts[volume]["readOnly"] is True
        assert volumes["tls"]["secret"]["defaultMode"] == 0o400
        assert Path(bootstrap.IN_POD["cert"]).parent == Path(mounts["tls"]["mountPath"])
        assert Path(bootstrap.IN_POD["data_key"]).parent == Path(mounts["data-key"]["mountPath"])
        assert Path(bootstrap.IN_POD["hpke_key"]).parent == Path(mounts["hpke-key"]["mountPath"])
        assert container["args"][-1].startswith(mounts["config"]["mountPath"])
        assert container["args"][-1] == bootstrap.IN_POD["config"]
        db = bootstrap.IN_POD["storage"].removeprefix("sqlite:///")
        assert Path(db).parent == Path(mounts["data"]["mountPath"])
        assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
        # key generations on a volume of their own, apart from the data
        assert spec["volumeClaimTemplates"][1]["metadata"]["name"] == "keys"
        assert Path(bootstrap.IN_POD["keys"]).parent == Path(mounts["keys"]["mountPath"])
        assert mounts["keys"]["mountPath"] != mounts["data"]["mountPath"]
    assert indices == {str(i) for i in range(1, 6)}
    pdb = next(d for d in k8s if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    common = pdb["spec"]["selector"]["matchLabels"]
    for sts in sets.values():
        labels = sts["spec"]["template"]["metadata"]["labels"]
        assert common.items() <= labels.items()


def test_k8s_bootstrap_rewrites_node_config_for_the_pod(
    initialised: tuple[Path, Path], tmp_path: Path
) -> None:
    import tomllib

    bootstrap = _load_bootstrap()
    data, _ = initialised
    text = bootstrap.in_pod_config(data / "node1" / "node.toml")
    config = parse_config(tomllib.loads(text), tmp_path / "node.toml")
    assert str(config.tls_cert) == bootstrap.IN_POD["cert"]
    assert str(config.tls_key) == bootstrap.IN_POD["key"]
    assert str(config.data_key.file) == bootstrap.IN_POD["data_key"]
    assert config.hpke is not None
    assert str(config.hpke.private_key_file) == bootstrap.IN_POD["hpke_key"]
    assert str(config.hpke.public_key_file) == bootstrap.IN_POD["hpke_pub"]
    db = bootstrap.IN_POD["storage"].removeprefix("sqlite:///")
    assert sqlite_path(config.storage_url) == Path(db) and Path(db).is_absolute()
    assert str(config.keys_dir) == bootstrap.IN_POD["keys"]
    assert config.node_id == load_node_config(data / "node1" / "node.toml").node_id
    secret = bootstrap.secret("x", {"data.key": b"ab"})
    assert secret["data"] == {"data.key": "YWI="} and secret["metadata"]["namespace"] == "pakr"


# -- systemd -------------------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        entries.setdefault(key, []).append(value)
    return entries


@pytest.mark.parametrize("name", ["pakr-node@.service", "pakr-coordinator.service"])
def test_systemd_units_are_hardened(name: str) -> None:
    unit = _unit(DEPLOY / "systemd" / name)
    assert unit["User"] == ["pakr"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "UMask": "0077",
        "KillSignal": "SIGTERM",
    }.items():
        assert unit[key] == [value], key
    assert "@system-service" in unit["SystemCallFilter"]
    for command in unit.get("ExecStartPre", []) + unit["ExecStart"]:
        argv = shlex.split(command.replace("%i", "node1"))
        assert argv[0].endswith("/pakr")
        _accepts(argv[1:])
    sysusers = (DEPLOY / "systemd" / "pakr.sysusers.conf").read_text()
    assert re.search(r"^u pakr ", sysusers, flags=re.MULTILINE)


def test_k8s_bootstrap_generates_every_object_the_statefulsets_mount(
    k8s: list[dict[str, Any]], tmp_path: Path
) -> None:
    import base64

    from cryptography import x509

    out = tmp_path / "bundle"
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "k8s" / "bootstrap.py"), "--out", str(out),
         "--tenant", "acme", "--address-template", "node{i}.pakr.example:7443"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.stat().st_mode & 0o077 == 0
    bundle = [d for d in yaml.safe_load_all((out / "pakr-secrets.yaml").read_text()) if d]
    validate_documents(bundle)  # the generated Secrets and ConfigMaps, against the API schemas
    by_name = {d["metadata"]["name"]: d for d in bundle}
    operator = json.loads((out / "operator.key").read_text())["public_key"]
    manifest = load_manifest(out / "manifest.json", operator_key=operator)
    for sts in (d for d in k8s if d["kind"] == "StatefulSet"):
        name = sts["metadata"]["name"]
        index = int(sts["spec"]["template"]["metadata"]["labels"]["pakr.dev/node-index"])
        for volume in sts["spec"]["template"]["spec"]["volumes"]:
            ref = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get(
                "name"
            )
            if ref:
                assert ref in by_name, f"{name} mounts {ref}, which bootstrap does not create"
        tls = by_name[f"{name}-tls"]
        assert tls["type"] == "kubernetes.io/tls"
        pem = base64.b64decode(tls["data"]["tls.crt"])
        node = next(n for n in manifest.nodes if n.index == index)
        assert node.tls_cert_pem is not None and node.tls_cert_pem.encode() == pem
        assert node.address == f"node{index}.pakr.example:7443"
        san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        names = set(san.value.get_values_for_type(x509.DNSName))
        assert {f"node{index}.pakr.example", f"{name}.pakr.svc.cluster.local", "localhost"} <= names
        data_key = base64.b64decode(by_name[f"{name}-data-key"]["data"]["data.key"])
        assert len(bytes.fromhex(data_key.decode().strip())) == 32
        config = by_name[f"{name}-config"]["data"]["node.toml"]
        assert f"index = {index}" in config and node.node_id.hex() in config
