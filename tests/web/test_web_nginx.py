"""deploy/web/nginx-pakr-node.conf for real: Debian's nginx terminating TLS in front of a node
process's web listener, as the production recipe says, with only the placeholders replaced.

Through it: a CORS preflight and a Connect call from the allowed origin, a gRPC-Web call, the
typed error detail of a refusal, a refused foreign origin, and a client that cannot choose
its own address for the rate limit by sending X-Forwarded-For (nginx replaces the header,
the node trusts only nginx)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pakr.node.tls import write_certificate
from pakr.proto import wire
from pakr.proto.errors import ErrorKind
from pakr.proto.v1 import node_pb2 as pb
from tests.web.test_web_node import APP, PREFLIGHT, WebNode, header, start
from tests.web.web_transport import frames, refusal_from_detail, trailer_lines

RECIPE = Path(__file__).parents[2] / "deploy" / "web" / "nginx-pakr-node.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not os.path.exists(NGINX) and os.environ.get("CI") != "true",
    reason="Debian's nginx is not installed (.ci/run installs it in CI)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fronted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebNode, str, Path]]:
    work = tmp_path_factory.mktemp("nginx")
    node = start(
        work / "node",
        f'listen = "127.0.0.1:0"\nallowed_origins = ["{APP}"]\ntrusted_proxies = ["127.0.0.1"]',
        rate=(0.0, 1, 0.001, 8),
    )
    cert, key = work / "fullchain.pem", work / "privkey.pem"
    write_certificate(cert, key, "node1 web", ["127.0.0.1", "localhost"])
    port = _free_port()
    site = (
        RECIPE.read_text()
        .replace("/etc/pakr/web/fullchain.pem", str(cert))
        .replace("/etc/pakr/web/privkey.pem", str(key))
        .replace("127.0.0.1:8443", f"127.0.0.1:{node.web_port}")
        .replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace("listen [::]:443 ssl;", "")
        .replace("server_name node1.example.com;", "server_name localhost;")
    )
    (work / "site.conf").write_text(site)
    temp = {name: work / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    (work / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {work}/nginx.pid;\nerror_log stderr;\n"
        + ("user root;\n" if os.geteuid() == 0 else "")
        + "events {}\nhttp {\n  access_log off;\n"
        + f"  client_body_temp_path {temp['body']};\n  proxy_temp_path {temp['proxy']};\n"
        + f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
        + f"  scgi_temp_path {temp['scgi']};\n  include {work}/site.conf;\n}}\n"
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(work), "-c", str(work / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise AssertionError(f"nginx did not start: {err[-2000:]}") from None
                time.sleep(0.1)
        yield node, f"https://127.0.0.1:{port}", cert
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr is not None:
            proc.stderr.close()
        node.proc.stop()


def test_calls_errors_and_cors_through_nginx(fronted: tuple[WebNode, str, Path]) -> None:
    node, base, cert = fronted
    trust = ssl.create_default_context(cafile=str(cert))
    body = pb.Recover1Request(header=header()).SerializeToString()
    connect = {
        "origin": APP,
        "content-type": "application/proto",
        "connect-protocol-version": "1",
        "authorization": f"Bearer {node.token()}",
    }
    with httpx.Client(base_url=base, verify=trust) as http:
        pre = http.options("/pakr.v1.Node/Recover1", headers={"origin": APP, **PREFLIGHT})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == APP
        assert pre.headers["strict-transport-security"]
        ok = http.post("/pakr.v1.Node/Recover1", content=body, headers=connect)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP
        assert pb.Recover1Response.FromString(ok.content).reset_nonce
        refused = http.post(
            "/pakr.v1.Node/Recover3",
            content=pb.Recover3Request(header=header(), version=os.urandom(16)).SerializeToString(),
            headers=connect,
        )
        assert refused.status_code == 400  # Connect's HTTP status for invalid_argument
        refusal = refusal_from_detail(refused.headers.get(f"trailer-{wire.ERROR_METADATA_KEY}"))
        assert refusal is not None and refusal.kind is ErrorKind.INVALID_REQUEST
        message = pb.Recover1Request(header=header()).SerializeToString()
        grpc_web = http.post(
            "/pakr.v1.Node/Recover1",
            content=b"\x00" + len(message).to_bytes(4, "big") + message,
            headers={**connect, "content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )
        parts = frames(grpc_web.content)
        assert trailer_lines(parts[-1][1])["grpc-status"] == "0"
        assert pb.Recover1Response.FromString(parts[0][1]).reset_nonce
        foreign = http.options(
            "/pakr.v1.Node/Recover1", headers={"origin": "https://evil.example", **PREFLIGHT}
        )
        assert foreign.status_code == 403
        assert not [k for k in foreign.headers if k.startswith("access-control-")]
        assert http.get("/").status_code == 404
        assert http.get("/pakr.v1.Node/Recover1").status_code == 403  # POST and OPTIONS only


def test_a_client_cannot_pick_its_address_through_nginx(
    fronted: tuple[WebNode, str, Path],
) -> None:
    """Every client address spoofed in X-Forwarded-For still lands in the one bucket of the
    real client (127.0.0.1 here, burst 8): ten requests, the last refused RATE_LIMITED. Were
    the header appended instead of replaced, each would get a fresh bucket."""
    node, base, cert = fronted
    trust = ssl.create_default_context(cafile=str(cert))
    body = pb.Register1Request(header=header()).SerializeToString()
    statuses = []
    with httpx.Client(base_url=base, verify=trust) as http:
        for i in range(10):
            reply = http.post(
                "/pakr.v1.Node/Register1",
                content=body,
                headers={
                    "content-type": "application/proto",
                    "authorization": f"Bearer {node.token()}",
                    "x-forwarded-for": f"203.0.113.{i}",
                },
            )
            statuses.append(reply.status_code)
    assert statuses[-1] == 429 and statuses.count(200) <= 8, statuses
