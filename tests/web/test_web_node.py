"""One real node process with its web listener: CORS, identical typed errors on both
listeners, shared rate limits, the client address behind a trusted proxy, TLS, and the
listener being off unless configured."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from pakr.proto import wire
from pakr.proto.errors import ErrorKind, NodeRefusal
from pakr.proto.manifest import ManifestNode
from pakr.proto.messages import REQUEST_ID_LEN, UserRef
from pakr.proto.tokens import TenantKey, issue_token
from pakr.proto.v1 import node_pb2 as pb
from pakr.proto.v1 import node_pb2_grpc
from tests.node.conftest import refusal_of, write_node_dir
from tests.node.test_process import NodeProcess
from tests.web.web_transport import WebTransport, same_refusal

APP = "http://app.test:8080"
USER = UserRef("acme", "alice")
PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization,content-type,connect-protocol-version",
}


@dataclass
class WebNode:
    proc: NodeProcess
    key: TenantKey
    cert: bytes
    node_id: bytes
    web_port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def token(self, user: UserRef = USER, *, scope: str = "user") -> str:
        return issue_token(self.key, user_id=user.user_id, audience=self.node_id.hex(), scope=scope)

    def stub(self) -> Any:
        channel = grpc.secure_channel(
            self.proc.address, grpc.ssl_channel_credentials(root_certificates=self.cert)
        )
        return node_pb2_grpc.NodeStub(channel)

    def web(self, *, grpc_web: bool = False, origin: str | None = APP) -> WebTransport:
        node = ManifestNode(self.node_id, 1, self.proc.address, web_origin=self.origin)
        return WebTransport(node, grpc_web=grpc_web, origin=origin)


def start(directory: Path, web: str | None, **kwargs: Any) -> WebNode:
    key = TenantKey.generate("acme")
    node_id = os.urandom(16)
    config = write_node_dir(
        directory, tenants={key.kid: key.public_key_text}, node_id=node_id, web=web, **kwargs
    )
    proc = NodeProcess(config)
    return WebNode(
        proc,
        key,
        (directory / "tls/node.crt").read_bytes(),
        node_id,
        int(proc.info.get("web_port", 0)),
    )


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebNode]:
    running = start(
        tmp_path_factory.mktemp("web") / "node",
        f'listen = "127.0.0.1:0"\nallowed_origins = ["{APP}"]',
    )
    try:
        yield running
    finally:
        running.proc.stop()


class Raw:
    """A request body given as raw bytes (malformed or oversize)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


def header(user: UserRef = USER, version: int | None = None) -> pb.RequestHeader:
    h = wire.header_to_pb(os.urandom(REQUEST_ID_LEN), user)
    if version is not None:
        h.protocol_version = version
    return h


def web_refusal(transport: WebTransport, method: str, request: Any, token: str) -> NodeRefusal:
    async def run() -> NodeRefusal:
        try:
            await transport.call(method, request, getattr(pb, f"{method}Response"), token, 5.0)
        except NodeRefusal as refusal:
            return refusal
        finally:
            await transport.close()
        raise AssertionError(f"{method} over the web listener was not refused")

    return asyncio.run(run())


def grpc_refusal(node: WebNode, method: str, request: Any, token: str) -> NodeRefusal:
    channel = grpc.secure_channel(
        node.proc.address, grpc.ssl_channel_credentials(root_certificates=node.cert)
    )
    call = channel.unary_unary(
        f"/pakr.v1.Node/{method}",
        request_serializer=lambda r: r.SerializeToString(),
        response_deserializer=getattr(pb, f"{method}Response").FromString,
    )
    with channel, pytest.raises(grpc.RpcError) as info:
        call(request, metadata=(("authorization", f"Bearer {token}"),), timeout=5)
    return refusal_of(info.value)


CASES = {
    "garbage token": ("Recover1", lambda n: pb.Recover1Request(header=header()), lambda n: "x.y.z"),
    "another user's token": (
        "Recover1",
        lambda n: pb.Recover1Request(header=header()),
        lambda n: n.token(UserRef("acme", "mallory")),
    ),
    "wrong scope": (
        "Recover1",
        lambda n: pb.Recover1Request(header=header()),
        lambda n: n.token(scope="audit"),
    ),
    "old protocol version": (
        "Recover1",
        lambda n: pb.Recover1Request(header=header(version=1)),
        lambda n: n.token(),
    ),
    "not registered": (
        "Recover3",
        lambda n: pb.Recover3Request(header=header(), version=os.urandom(16)),
        lambda n: n.token(),
    ),
    "undecodable body": ("Recover2", lambda n: Raw(b"\xff\xff\xff"), lambda n: n.token()),
    "oversize body": (
        "Register2",
        lambda n: Raw(b"\x0a" + b"\xff" * (wire.MAX_MESSAGE_BYTES + 10)),
        lambda n: n.token(),
    ),
    "bad audit limit": (
        "ReadAudit",
        lambda n: pb.ReadAuditRequest(header=header(), limit=0),
        lambda n: n.token(scope="audit"),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_same_typed_refusal_on_both_listeners(node: WebNode, case: str) -> None:
    method, make_request, make_token = CASES[case]
    request, token = make_request(node), make_token(node)
    over_grpc = grpc_refusal(node, method, request, token)
    over_connect = web_refusal(node.web(), method, request, token)
    over_grpc_web = web_refusal(node.web(grpc_web=True), method, request, token)
    assert over_grpc.kind is not ErrorKind.INTERNAL
    assert same_refusal(over_connect) == same_refusal(over_grpc) == same_refusal(over_grpc_web)


def test_preflight_and_calls_from_the_allowed_origin(node: WebNode) -> None:
    with httpx.Client(base_url=node.origin) as http:
        pre = http.options("/pakr.v1.Node/Recover1", headers={"origin": APP, **PREFLIGHT})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == APP
        assert pre.headers["access-control-allow-methods"] == "POST"
        allowed = {h.strip() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "connect-protocol-version"} <= allowed
        assert "access-control-allow-credentials" not in pre.headers
        body = pb.Recover1Request(header=header()).SerializeToString()
        call = http.post(
            "/pakr.v1.Node/Recover1",
            content=body,
            headers={
                "origin": APP,
                "content-type": "application/proto",
                "connect-protocol-version": "1",
                "authorization": f"Bearer {node.token()}",
            },
        )
        assert call.status_code == 200
        assert call.headers["access-control-allow-origin"] == APP
        exposed = {h.strip() for h in call.headers["access-control-expose-headers"].split(",")}
        assert exposed == {
            "grpc-status",
            "grpc-message",
            "grpc-status-details-bin",
            "pakr-error-bin",
            "trailer-pakr-error-bin",
        }
        assert pb.Recover1Response.FromString(call.content).reset_nonce


@pytest.mark.parametrize(
    "origin", ["http://evil.test", "http://app.test:8081", "https://app.test:8080", "null"]
)
def test_other_origins_get_no_cors_headers_and_no_call(node: WebNode, origin: str) -> None:
    with httpx.Client(base_url=node.origin) as http:
        pre = http.options("/pakr.v1.Node/Recover1", headers={"origin": origin, **PREFLIGHT})
        assert pre.status_code == 403
        assert not [k for k in pre.headers if k.startswith("access-control-")]
        call = http.post(
            "/pakr.v1.Node/Register3",
            content=b"",
            headers={"origin": origin, "content-type": "application/proto"},
        )
        assert call.status_code == 403 and call.content == b""
        assert not [k for k in call.headers if k.startswith("access-control-")]


def test_no_get_no_compression_no_grpc(node: WebNode) -> None:
    body = pb.Recover1Request(header=header()).SerializeToString()
    auth = {"authorization": f"Bearer {node.token()}", "connect-protocol-version": "1"}
    with httpx.Client(base_url=node.origin) as http:
        get = http.get(
            "/pakr.v1.Node/Recover1",
            params={"encoding": "proto", "base64": "1", "message": "", "connect": "v1"},
            headers=auth,
        )
        assert get.status_code in (405, 415, 400)
        gz = http.post(
            "/pakr.v1.Node/Recover1",
            content=body,
            headers={**auth, "content-type": "application/proto", "content-encoding": "gzip"},
        )
        assert gz.status_code != 200
        json_codec = http.post(
            "/pakr.v1.Node/Recover1",
            content=b"{}",
            headers={**auth, "content-type": "application/json"},
        )
        assert json_codec.status_code == 415
        unknown = http.post("/pakr.v1.Node/Nope", content=body, headers=auth)
        assert unknown.status_code == 404


def _listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_web_listener_is_off_by_default(tmp_path: Path, node: WebNode) -> None:
    plain = start(tmp_path / "plain", None)
    try:
        assert "web_port" not in plain.proc.info
        grpc_port = int(plain.proc.address.rpartition(":")[2])
        assert _listening_ports(plain.proc.proc.pid) == {grpc_port}
    finally:
        plain.proc.stop()
    # the check can fail: the web node listens on both
    assert _listening_ports(node.proc.proc.pid) == {
        int(node.proc.address.rpartition(":")[2]),
        node.web_port,
    }


def test_a_busy_web_port_fails_the_start_cleanly(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AssertionError, match=f"cannot listen on 127.0.0.1:{port}"):
            start(tmp_path / "busy", f'listen = "127.0.0.1:{port}"\nallowed_origins = ["{APP}"]')


def test_both_listeners_share_one_rate_limit_per_client_address(tmp_path: Path) -> None:
    limited = start(
        tmp_path / "limited",
        f'listen = "127.0.0.1:0"\nallowed_origins = ["{APP}"]',
        rate=(0.0, 1, 0.001, 4),
    )
    try:
        request = pb.Register1Request(header=header())
        for _ in range(2):
            limited.stub().Register1(
                request, metadata=(("authorization", f"Bearer {limited.token()}"),), timeout=5
            )

        async def web_twice() -> None:
            transport = limited.web()
            try:
                for _ in range(2):
                    await transport.call(
                        "Register1", request, pb.Register1Response, limited.token(), 5.0
                    )
            finally:
                await transport.close()

        asyncio.run(web_twice())  # the bucket of 4 is now empty, whichever listener is asked
        refused = web_refusal(limited.web(), "Register1", request, limited.token())
        assert refused.kind is ErrorKind.RATE_LIMITED and refused.retry_after
        assert grpc_refusal(limited, "Register1", request, limited.token()).kind is (
            ErrorKind.RATE_LIMITED
        )
    finally:
        limited.proc.stop()


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-proxy", "untrusted"])
def test_x_forwarded_for_only_from_a_trusted_proxy(tmp_path: Path, trusted: bool) -> None:
    proxies = 'trusted_proxies = ["127.0.0.0/8"]' if trusted else ""
    limited = start(
        tmp_path / "proxied",
        f'listen = "127.0.0.1:0"\nallowed_origins = ["{APP}"]\n{proxies}',
        rate=(0.0, 1, 0.001, 2),
    )
    try:
        body = pb.Register1Request(header=header()).SerializeToString()
        headers = {
            "content-type": "application/proto",
            "authorization": f"Bearer {limited.token()}",
        }
        with httpx.Client(base_url=limited.origin) as http:
            statuses = [
                http.post(
                    "/pakr.v1.Node/Register1",
                    content=body,
                    headers={**headers, "x-forwarded-for": f"198.51.100.7, 203.0.113.{i}"},
                ).status_code
                for i in range(4)
            ]
    finally:
        limited.proc.stop()
    if trusted:  # each client address its own bucket of 2
        assert statuses == [200, 200, 200, 200]
    else:  # the header is ignored: every request is the proxy's own address
        assert statuses == [200, 200, 429, 429]


def test_a_tls_web_listener(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    secure = start(
        directory,
        f'listen = "127.0.0.1:0"\nallowed_origins = ["{APP}"]\n'
        'tls_cert = "tls/node.crt"\ntls_key = "tls/node.key"',
    )
    try:
        trust = ssl.create_default_context(cafile=str(directory / "tls/node.crt"))
        body = pb.Recover1Request(header=header()).SerializeToString()
        with httpx.Client(base_url=f"https://127.0.0.1:{secure.web_port}", verify=trust) as http:
            call = http.post(
                "/pakr.v1.Node/Recover1",
                content=body,
                headers={
                    "content-type": "application/proto",
                    "authorization": f"Bearer {secure.token()}",
                },
            )
        assert call.status_code == 200
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{secure.web_port}") as http,
            pytest.raises(httpx.HTTPError),
        ):
            http.post("/pakr.v1.Node/Recover1", content=body)
    finally:
        secure.proc.stop()
