"""``host:port`` addresses: the one parser every layer uses (configs, manifests, dialling).

A host is a name, an IPv4 address or a bracketed IPv6 address (``[::1]:7001``); the port is
decimal. Port 0 ("any free port") is only meaningful for a listen address, so callers that
dial pass ``listen=False`` and get 1..65535.
"""

from __future__ import annotations

import ipaddress

from pakr.proto.errors import ConfigError

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def split_host_port(value: str, what: str, *, listen: bool = True) -> tuple[str, int]:
    """``host:port`` → (host without brackets, port); ``ConfigError`` naming ``what``."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"{what} must be HOST:PORT, got {value!r}")
    port = int(port_text)
    low = 0 if listen else 1
    if not low <= port <= 65535:
        raise ConfigError(f"{what}: port must be {low}..65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def join_host_port(host: str, port: int) -> str:
    """The inverse of :func:`split_host_port` (brackets an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dial_address(address: str) -> str:
    """Where to connect for a listen address: a wildcard host is reached over loopback."""
    host, port = split_host_port(address, "address")
    return join_host_port("127.0.0.1", port) if host in WILDCARD_HOSTS else address
