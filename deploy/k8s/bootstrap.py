#!/usr/bin/env python3
"""Generate the per-deployment objects ``pakr-nodes.yaml`` expects, plus the signed manifest.

Run once, on an operator workstation with pakr installed (``pip install 'pakr[node]'``)::

    python deploy/k8s/bootstrap.py --out ./pakr-k8s --tenant acme \\
        --address-template 'pakr-node-{i}.example.com:7443'
    kubectl apply -f deploy/k8s/pakr-nodes.yaml
    kubectl apply -f ./pakr-k8s/pakr-secrets.yaml      # then delete the file or vault it
    # publish ./pakr-k8s/manifest.json to your applications

For each node it runs ``pakr node init`` (fresh id, data key), replaces the certificate with
one naming the node's in-cluster Service names and its external address (``pakr tls create``),
and writes a ConfigMap (node.toml with in-pod paths) and three Secrets (TLS, data key, HPKE
key). The
operator key and the tenant key are created unless given; keep the operator key offline.

The output directory holds secrets: it is created with mode 0700, and nothing in it belongs in
version control.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from pakr.node import tomlfields as fields
from pakr.node.config import (
    CONFIG_HEADER,
    DataKeySource,
    HpkeKeyFiles,
    load_config,
    resolve_storage_url,
)

NAMESPACE = "pakr"
PORT = 7443
METRICS_PORT = 9100
IN_POD = {
    "config": "/etc/pakr/config/node.toml",
    "cert": "/etc/pakr/tls/tls.crt",
    "key": "/etc/pakr/tls/tls.key",
    "data_key": "/etc/pakr/data-key/data.key",
    "hpke_key": "/etc/pakr/hpke/hpke.key",
    "hpke_pub": "/etc/pakr/hpke/hpke.pub",
    "storage": "sqlite:////var/lib/pakr/node.db",
    "keys": "/var/lib/pakr-keys/node",  # its own volume, apart from the data
}


def pakr(*args: str) -> dict[str, Any]:
    """Run the pakr CLI; return its last JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "pakr.coordinator", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"pakr {args[0]} {args[1]} failed: {done.stderr.strip()}")
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    return {}


def in_pod_config(path: Path) -> str:
    """node.toml as ``pakr node init`` wrote it at ``path``, with paths moved to the pod's
    mounts (loaded, changed and written back by pakr's own config code)."""
    config = load_config(path)
    return fields.dumps(
        replace(
            config,
            path=Path(IN_POD["config"]),
            tls_cert=Path(IN_POD["cert"]),
            tls_key=Path(IN_POD["key"]),
            data_key=DataKeySource(file=Path(IN_POD["data_key"])),
            hpke=HpkeKeyFiles(Path(IN_POD["hpke_key"]), Path(IN_POD["hpke_pub"])),
            storage_url=resolve_storage_url(IN_POD["storage"], Path("/")),
            keys_dir=Path(IN_POD["keys"]),
        ).to_toml(),
        CONFIG_HEADER,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def secret(name: str, data: dict[str, bytes], kind: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {k: b64(v) for k, v in data.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output directory (secrets!)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--threshold", type=int, default=3)
    parser.add_argument("--tenant", default="app", help="tenant name for a new tenant key")
    parser.add_argument("--tenant-key", type=Path, help="existing tenant key file to trust")
    parser.add_argument("--operator-key", type=Path, help="existing operator key file")
    parser.add_argument(
        "--address-template",
        default="pakr-node-{i}." + NAMESPACE + ".svc.cluster.local:" + str(PORT),
        help="address clients dial for node {i} (goes into the manifest and the certificate)",
    )
    args = parser.parse_args()

    out: Path = args.out
    out.mkdir(mode=0o700, parents=True, exist_ok=False)
    operator_key = args.operator_key or out / "operator.key"
    if args.operator_key is None:
        pakr("manifest", "keygen", str(operator_key))
    if args.tenant_key is None:
        tenant = pakr("tenant", "create", args.tenant, "--dir", str(out))
        kid, public = tenant["kid"], tenant["public_key"]
    else:
        key = json.loads(args.tenant_key.read_text())
        kid, public = key["kid"], key["public_key"]

    objects: list[dict[str, Any]] = []
    configs: list[str] = []
    addresses: list[str] = []
    for i in range(1, args.nodes + 1):
        name = f"pakr-node-{i}"
        node_dir = out / "nodes" / f"node{i}"
        pakr(
            "node", "init", "--dir", str(node_dir), "--index", str(i),
            "--listen", f"0.0.0.0:{PORT}", "--metrics-listen", f"0.0.0.0:{METRICS_PORT}",
            "--tenant", f"{kid}={public}",
        )  # fmt: skip
        address = args.address_template.format(i=i)
        hosts = [
            name,
            f"{name}.{NAMESPACE}",
            f"{name}.{NAMESPACE}.svc",
            f"{name}.{NAMESPACE}.svc.cluster.local",
            address.rpartition(":")[0],
        ]
        cert, key_file = node_dir / "tls" / "node.crt", node_dir / "tls" / "node.key"
        pakr(
            "tls", "create", "--cert", str(cert), "--key", str(key_file), "--name", name,
            "--force", *(arg for host in hosts for arg in ("--host", host)),
        )  # fmt: skip
        configs.append(str(node_dir / "node.toml"))
        addresses += ["--address", f"{i}={address}"]
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-config", "namespace": NAMESPACE},
                "data": {"node.toml": in_pod_config(node_dir / "node.toml")},
            }
        )
        objects.append(
            secret(
                f"{name}-tls",
                {"tls.crt": cert.read_bytes(), "tls.key": key_file.read_bytes()},
                "kubernetes.io/tls",
            )
        )
        objects.append(
            secret(f"{name}-data-key", {"data.key": (node_dir / "keys" / "data.key").read_bytes()})
        )
        objects.append(
            secret(
                f"{name}-hpke-key",
                {
                    "hpke.key": (node_dir / "hpke.key").read_bytes(),
                    "hpke.pub": (node_dir / "hpke.pub").read_bytes(),
                },
            )
        )

    pakr(
        "manifest", "create", "--operator-key", str(operator_key), "--node-config", *configs,
        "--threshold", str(args.threshold), *addresses, "--out", str(out / "manifest.json"),
    )  # fmt: skip
    target = out / "pakr-secrets.yaml"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        # JSON is YAML: no dependency beyond pakr's own.
        for obj in objects:
            handle.write("---\n" + json.dumps(obj, indent=2) + "\n")
    print(f"wrote {target} (Secrets + ConfigMaps) and {out / 'manifest.json'}")
    print("apply: kubectl apply -f deploy/k8s/pakr-nodes.yaml -f", target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
