"""The node's optional ``[web]`` table: a browser-reachable listener beside the gRPC one.

Browsers cannot speak gRPC over HTTP/2 with a pinned certificate, so a node may also serve
the same ``pakr.v1.Node`` RPCs over the Connect protocol and gRPC-Web (``pakr.node.web``).
The table is absent by default: no port opens unless an operator asks for one. ::

    [web]
    listen = "127.0.0.1:8443"              # HOST:PORT of the web listener
    origin = "https://node1.example"       # what the manifest lists (default: from listen)
    allowed_origins = ["https://app.example"]  # exact origins of the web apps (CORS)
    dev_origins = false                    # also any http://127.0.0.1|localhost|[::1]:PORT
    tls_cert = "web/cert.pem"              # optional; both or neither. Without them the
    tls_key = "web/key.pem"                #   listener is plaintext and loopback-only
    trusted_proxies = ["127.0.0.1"]        # peers whose X-Forwarded-For names the client

No wildcard origin is accepted: a node answers only the web apps its operator named.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakr.node import tomlfields as fields
from pakr.proto.errors import ConfigError
from pakr.proto.manifest import parse_web_origin

WEB_KEYS = {
    "listen",
    "origin",
    "allowed_origins",
    "dev_origins",
    "tls_cert",
    "tls_key",
    "trusted_proxies",
}
# What dev_origins admits: a page served by a local dev server on any port.
DEV_ORIGIN_PATTERN = r"http://(127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5}"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, slots=True)
class WebConfig:
    """A validated ``[web]`` table."""

    listen: str
    host: str
    port: int
    allowed_origins: tuple[str, ...] = ()
    dev_origins: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    origin: str | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def public_origin(self) -> str:
        """The origin browsers use for this node (``origin``, else derived from ``listen``)."""
        if self.origin is not None:
            return self.origin
        if self.host in WILDCARD_HOSTS:
            raise ConfigError(
                f"web.listen {self.listen} is a wildcard address; set web.origin to the"
                " origin browsers reach this node at"
            )
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls else "http"
        port = "" if self.port == (443 if self.tls else 80) else f":{self.port}"
        return parse_web_origin(f"{scheme}://{host}{port}", "web.origin (from web.listen)")


def _strings(table: Mapping[str, Any], key: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"web.{key} must be a list of non-empty strings")
    return list(value)


def parse_web(doc: Mapping[str, Any], base: Path) -> WebConfig | None:
    """The ``[web]`` table of ``node.toml`` (``None`` when absent: the listener is off)."""
    if "web" not in doc:
        return None
    from pakr.node.config import is_loopback, split_host_port  # config imports this module

    web = fields.table(doc, "web")
    fields.known(web, "web", WEB_KEYS)
    listen = fields.string(web, "listen", "web")
    host, port = split_host_port(listen, "web.listen")
    origins = []
    for value in _strings(web, "allowed_origins"):
        if value == "*" or "*" in value:
            raise ConfigError(
                "web.allowed_origins: no wildcard; list each web app's exact origin"
                " (dev_origins = true admits local dev servers)"
            )
        origins.append(parse_web_origin(value, "web.allowed_origins"))
    dev_origins = web.get("dev_origins", False)
    if not isinstance(dev_origins, bool):
        raise ConfigError("web.dev_origins must be true or false")
    if dev_origins and not is_loopback(host):
        raise ConfigError(
            "web.dev_origins is for local development: allowed only with a loopback web.listen"
        )
    if not origins and not dev_origins:
        raise ConfigError(
            "web.allowed_origins is empty: list the origins of the web apps that may call"
            " this node (or remove [web])"
        )
    if ("tls_cert" in web) != ("tls_key" in web):
        raise ConfigError("web.tls_cert and web.tls_key go together: give both or neither")
    tls_cert = tls_key = None
    if "tls_cert" in web:
        tls_cert = fields.path_in(base, fields.string(web, "tls_cert", "web"))
        tls_key = fields.path_in(base, fields.string(web, "tls_key", "web"))
    elif not is_loopback(host):
        raise ConfigError(
            "web.listen is not a loopback address: give web.tls_cert and web.tls_key, or"
            " listen on 127.0.0.1 behind a TLS reverse proxy"
        )
    proxies = []
    for value in _strings(web, "trusted_proxies"):
        try:
            proxies.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise ConfigError(
                f"web.trusted_proxies: {value!r} is not an IP address or network"
            ) from None
    origin = None
    if "origin" in web:
        origin = parse_web_origin(web["origin"], "web.origin")
    return WebConfig(
        listen=listen,
        host=host,
        port=port,
        allowed_origins=tuple(origins),
        dev_origins=dev_origins,
        tls_cert=tls_cert,
        tls_key=tls_key,
        trusted_proxies=tuple(proxies),
        origin=origin,
    )
