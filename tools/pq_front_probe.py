"""Measure the hybrid-capable TLS front of docs/security.md §6 against a real pakr node.

The machine's own nginx and Node.js may be linked against OpenSSL 3.0 (no ML-KEM), so this
runs them from a Debian 13 root file system (OpenSSL 3.5), made once with

    debootstrap --variant=minbase --include=nginx,nodejs trixie /tmp/trixie

and then (as root, from the repository, with the dev venv):

    PYTHONPATH=. .venv/bin/python tools/pq_front_probe.py --root /tmp/trixie

It starts a one-node local cluster, puts nginx (the §6 configuration, in the root via chroot)
in front of the node, and prints the key-exchange group of each hop as read from the
clear-text ServerHello: the root's Node.js → node, grpcio → nginx, this machine's Node.js →
nginx, the root's Node.js → nginx, and nginx → node.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pakr.coordinator.health import probe
from pakr.coordinator.localcluster import LocalCluster, free_ports
from pakr.node.tls import write_certificate
from tests.security.hello_tap import HelloTap

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = ROOT / "tests" / "security" / "node_tls_group.mjs"
NGINX_CONF = """daemon off; pid /tmp/pakr-front/nginx.pid; error_log /tmp/pakr-front/error.log;
events {{}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} ssl; http2 on;
    ssl_certificate /tmp/pakr-front/front.crt; ssl_certificate_key /tmp/pakr-front/front.key;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519MLKEM768:X25519;
    location / {{
      grpc_pass grpcs://{upstream};
      grpc_ssl_trusted_certificate /tmp/pakr-front/node.crt;
      grpc_ssl_verify on; grpc_ssl_name localhost; grpc_ssl_protocols TLSv1.3;
    }}
  }}
}}
"""


def _groups(tap: HelloTap) -> str:
    return "; ".join(h.describe() for h in tap.handshakes() if h) or "no handshake"


def _node_js(argv: list[str], address: str, ca: str) -> str:
    out = subprocess.run(
        [*argv, address, ca], capture_output=True, text=True, timeout=30, check=False
    )
    return out.stdout.strip() or out.stderr.strip()[-200:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="Debian 13 root file system")
    args = parser.parse_args(argv)
    root: Path = args.root
    work = root / "tmp" / "pakr-front"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(NODE_SCRIPT, work / "node_tls_group.mjs")
    in_root = ["chroot", str(root), "node", "/tmp/pakr-front/node_tls_group.mjs"]
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(tmp, nodes=1, threshold=1) as cluster:
        node = cluster.node(1)
        shutil.copy(node.tls_cert, work / "node.crt")
        write_certificate(work / "front.crt", work / "front.key", "pakr front", ["127.0.0.1"])
        with HelloTap(node.address) as tap:
            result = _node_js(in_root, tap.address, "/tmp/pakr-front/node.crt")
            print(f"root's Node.js -> node: {result}\n  wire: {_groups(tap)}")
        (port,) = free_ports(1, "127.0.0.1")
        upstream = HelloTap(node.address).start()
        (work / "nginx.conf").write_text(NGINX_CONF.format(port=port, upstream=upstream.address))
        nginx = subprocess.Popen(["chroot", str(root), "nginx", "-c", "/tmp/pakr-front/nginx.conf"])
        try:
            time.sleep(1.5)
            front = f"127.0.0.1:{port}"
            with HelloTap(front) as tap:
                ok = probe(tap.address, (work / "front.crt").read_bytes(), timeout=5)
                print(f"grpcio -> nginx: serving={ok.serving} {ok.error}\n  wire: {_groups(tap)}")
            node_bin = shutil.which("node")
            if node_bin is not None:
                with HelloTap(front) as tap:
                    here = [node_bin, str(NODE_SCRIPT)]
                    result = _node_js(here, tap.address, str(work / "front.crt"))
                    print(f"this machine's Node.js -> nginx: {result}\n  wire: {_groups(tap)}")
            with HelloTap(front) as tap:
                result = _node_js(in_root, tap.address, "/tmp/pakr-front/front.crt")
                print(f"root's Node.js -> nginx: {result}\n  wire: {_groups(tap)}")
            print(f"nginx -> node:\n  wire: {_groups(upstream)}")
        finally:
            nginx.terminate()
            nginx.wait(10)
            upstream.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
