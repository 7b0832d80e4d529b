"""The node's web listener: the ``pakr.v1.Node`` RPCs for browsers, beside the gRPC listener.

A browser can neither speak gRPC over HTTP/2 nor pin a certificate, so a node with a
``[web]`` table also serves every RPC over the Connect protocol (unary, binary protobuf) and
gRPC-Web, both from ``connectrpc``'s ASGI application on a uvicorn server inside the node's
event loop. Nothing protocol-specific happens here: each call is handed to the *same*
:class:`~pakr.node.servicer.NodeServicer` method, wrapped by the same ``guarded`` and fed by
the same tolerant request parser as the gRPC listener, so authentication, rate limits,
validation, guess counting, metrics and audit exist once. :class:`WebContext` adapts the
few ``grpc.aio`` context methods the servicer uses.

Errors reach the browser with the typed detail the Python SDK reads: the serialized
``pakr.v1.ErrorDetail`` in the ``pakr-error-bin`` trailer (base64; a ``trailer-`` header in
a Connect unary response, the trailer frame in gRPC-Web), and the same message as the Connect
error detail of type ``pakr.v1.ErrorDetail``.

Before the RPC application: requests that carry an ``Origin`` not allowed are refused (403,
no CORS headers), and CORS answers the allowed ones (preflight included) exposing only the
status and error headers. The client address comes from the connection, or from
``X-Forwarded-For`` only when the connection comes from a configured trusted proxy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, NoReturn, cast

import grpc
import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication, Endpoint
from protobuf.wkt import Any as AnyPb
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from pakr.node.servicer import Context, NodeServicer, tolerant_parser
from pakr.node.webconfig import DEV_ORIGIN_PATTERN, WebConfig
from pakr.proto import wire
from pakr.proto.errors import ConfigError
from pakr.proto.v1 import node_pb2 as pb

log = logging.getLogger("pakr.node.web")

SERVICE = "pakr.v1.Node"
ERROR_DETAIL_TYPE = "pakr.v1.ErrorDetail"
# Read up to 16 x the message limit so an oversize body reaches the servicer's typed refusal,
# as the gRPC listener does (pakr.node.server.OVERSIZE_READ_BYTES); beyond it connectrpc
# refuses unread with RESOURCE_EXHAUSTED.
READ_MAX_BYTES = 16 * wire.MAX_MESSAGE_BYTES
# What a browser client sends (Connect and gRPC-Web, connect-web's transports) ...
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "grpc-timeout",
    "x-grpc-web",
    "x-user-agent",
)
# ... and the only response headers its script may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = (
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    wire.ERROR_METADATA_KEY,
    f"trailer-{wire.ERROR_METADATA_KEY}",
)
PREFLIGHT_MAX_AGE = 600
KEEP_ALIVE_SECONDS = 30
MAX_CONNECTIONS = 1000


def _code(status: grpc.StatusCode) -> Code:
    return Code.CANCELED if status is grpc.StatusCode.CANCELLED else Code[status.name]


def peer_of(client_address: str | None) -> str:
    """A connection's address in grpcio's ``peer()`` form (``ipv4:1.2.3.4:5``,
    ``ipv6:[::1]:5``), so both listeners share one rate-limit bucket per client address."""
    if not client_address:
        return "unknown"
    host, _, port = client_address.rpartition(":")
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return f"web:{client_address}"
    return f"ipv4:{host}:{port}" if version == 4 else f"ipv6:[{host}]:{port}"


class WebContext:
    """The ``grpc.aio.ServicerContext`` methods :class:`NodeServicer` uses, over a Connect
    request: metadata from the HTTP headers, trailing metadata into the response trailers
    (``-bin`` values base64, as gRPC-Web and Connect carry binary metadata), ``abort`` as a
    :class:`ConnectError` carrying the typed detail."""

    def __init__(self, ctx: RequestContext[Any, Any], *, tls: bool) -> None:
        self._ctx = ctx
        self._tls = tls
        self._detail: bytes | None = None

    def peer(self) -> str:
        return peer_of(self._ctx.client_address)

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        # The ASGI server does not report the TLS group; the metric says which listener.
        return {"ssl_negotiated_key_exchange_group": [b"web-tls"]} if self._tls else {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._ctx.request_headers.allitems())

    def time_remaining(self) -> float | None:
        remaining = self._ctx.timeout_ms
        return None if remaining is None else max(remaining / 1000.0, 0.0)

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        for key, value in metadata:
            if isinstance(value, bytes):
                if key == wire.ERROR_METADATA_KEY:
                    self._detail = value
                text = base64.b64encode(value).decode("ascii")
            else:
                text = value
            self._ctx.response_trailers[key] = text

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        extra = []
        if self._detail is not None:
            any_detail = AnyPb(type_url=f"type.googleapis.com/{ERROR_DETAIL_TYPE}")
            any_detail.value = self._detail
            extra.append(ErrorDetail(any_detail))
        raise ConnectError(_code(code), details, extra)


class RequestCodec:
    """Binary protobuf, decoded by the servicer's tolerant parser: a body that is too large
    or does not parse reaches the servicer, which refuses it with the typed INVALID_REQUEST
    detail exactly as on the gRPC listener (counted, logged, rate limited)."""

    def name(self) -> str:
        return "proto"

    def encode(self, message: Any) -> bytes:
        return cast(bytes, message.SerializeToString())

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        return tolerant_parser(message_class)(bytes(data))


def _endpoints(servicer: NodeServicer, *, tls: bool) -> dict[str, Any]:
    """``/pakr.v1.Node/<Method>`` → a unary endpoint calling the servicer's guarded method."""
    endpoints: dict[str, Any] = {}
    for method in pb.DESCRIPTOR.services_by_name["Node"].methods:
        rpc = servicer.guarded(method.name, getattr(servicer, method.name))
        info: MethodInfo[Any, Any] = MethodInfo(
            name=method.name,
            service_name=SERVICE,
            input=getattr(pb, method.input_type.name),
            output=getattr(pb, method.output_type.name),
            idempotency_level=IdempotencyLevel.UNKNOWN,  # POST only; no GET caching
            stream_type=StreamType.UNARY,
        )

        def call(rpc: Callable[[Any, Context], Any]) -> Callable[..., Any]:
            async def handle(request: Any, ctx: RequestContext[Any, Any]) -> Any:
                return await rpc(request, cast(Context, WebContext(ctx, tls=tls)))

            return handle

        endpoints[f"/{SERVICE}/{method.name}"] = Endpoint.unary(info, call(rpc))
    return endpoints


class NodeWebApp(ConnectASGIApplication[NodeServicer]):
    """``pakr.v1.Node`` as a Connect/gRPC-Web ASGI application over one servicer."""

    def __init__(self, servicer: NodeServicer, *, tls: bool) -> None:
        super().__init__(
            service=servicer,
            endpoints=lambda s: _endpoints(s, tls=tls),
            read_max_bytes=READ_MAX_BYTES,
            compressions=(),  # identity only: nothing to decompress, no bomb to defuse
            codecs=[RequestCodec()],
        )

    @property
    def path(self) -> str:
        return f"/{SERVICE}"


class OriginGate:
    """Refuses any request whose ``Origin`` is not allowed (403, no CORS headers), so a page
    of another origin gets neither a preflight answer nor a call through; requests without
    ``Origin`` (non-browser clients) pass, as they do on the gRPC listener."""

    def __init__(self, app: ASGIApp, allowed: Callable[[str], bool]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            origins = [v for k, v in scope["headers"] if k == b"origin"]
            if origins and (len(origins) > 1 or not self.allowed(origins[0].decode("latin-1"))):
                await send({"type": "http.response.start", "status": 403, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


def build_app(servicer: NodeServicer, config: WebConfig) -> ASGIApp:
    """The ASGI stack: origin gate → CORS → the Connect/gRPC-Web application."""
    cors = CORSMiddleware(
        cast(ASGIApp, NodeWebApp(servicer, tls=config.tls)),
        allow_origins=config.allowed_origins,
        allow_origin_regex=DEV_ORIGIN_PATTERN if config.dev_origins else None,
        allow_methods=("POST",),
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE,
    )
    return OriginGate(cors, cors.is_allowed_origin)


class _Server(uvicorn.Server):
    """uvicorn inside the node's loop: the node owns SIGTERM/SIGINT (drain), not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(config: WebConfig) -> socket.socket:
    """The listening socket, bound here so a busy port is a ConfigError, not an exit."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted connections inherit it: a response goes out as headers then body, and
        # Nagle's algorithm would hold the body for the client's delayed ACK on every call
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((config.host, config.port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {config.listen} (web.listen): {exc.strerror}; pick another"
        ) from None
    return sock


def _check_tls(config: WebConfig) -> None:
    if config.tls_cert is None or config.tls_key is None:
        return
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"web.tls_cert/web.tls_key ({config.tls_cert}, {config.tls_key}) cannot be"
            f" loaded: {exc}"
        ) from None


class WebListener:
    """A running web listener (``start``/``stop`` alongside the node's gRPC server)."""

    def __init__(self, server: _Server, task: asyncio.Task[None], port: int) -> None:
        self._server = server
        self._task = task
        self.port = port

    @classmethod
    async def start(cls, config: WebConfig, servicer: NodeServicer) -> WebListener:
        """Bind and serve; ``ConfigError`` on a busy port or unreadable certificate."""
        _check_tls(config)
        sock = _bind(config)
        trusted = list(config.trusted_proxies)
        settings = uvicorn.Config(
            build_app(servicer, config),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            http="h11",
            proxy_headers=bool(trusted),
            forwarded_allow_ips=trusted or None,
            ssl_certfile=None if config.tls_cert is None else str(config.tls_cert),
            ssl_keyfile=None if config.tls_key is None else str(config.tls_key),
            limit_concurrency=MAX_CONNECTIONS,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        server = _Server(settings)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                sock.close()
                raise ConfigError(f"the web listener on {config.listen} failed to start")
            await asyncio.sleep(0.01)
        port = int(sock.getsockname()[1])
        log.info(
            "web listener serving",
            extra={
                "fields": {
                    "listen": f"{config.host}:{port}",
                    "tls": config.tls,
                    "origins": list(config.allowed_origins),
                    "dev_origins": config.dev_origins,
                }
            },
        )
        return cls(server, task, port)

    async def stop(self, grace: float | None) -> None:
        """Stop accepting, let in-flight calls finish (``grace`` s), close connections."""
        self._server.config.timeout_graceful_shutdown = None if grace is None else int(grace)
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
