"""The coordinator's configuration: ``coordinator.toml`` parsed into a frozen dataclass.

The coordinator is the control plane (manifest distribution, cluster health, metrics); it
never sees a password, a share or a secret, so its config holds no data key. The one
credential it may hold is a tenant token key for the *canary* probe: a Recover1 (a read of a
user's public status) on a user that is never registered, which proves a node's auth and
storage paths work end to end. Give it a dedicated tenant so that key can mint tokens for
nothing else of value.

Layout::

    [coordinator]
    listen = "127.0.0.1:7000"
    manifest = "manifest.json"        # the signed manifest it serves and probes
    insecure = false                  # plaintext; loopback only
    health_cache_seconds = 2.0        # ClusterHealth answers from a cache this fresh
    probe_timeout_seconds = 2.0

    [tls]
    cert = "tls/coordinator.crt"
    key = "tls/coordinator.key"

    [canary]                          # optional: without it, health is grpc.health only
    tenant_key = "tenants/canary.key"
    user_id = "pakr-canary"

    [metrics]
    listen = "127.0.0.1:9200"

Relative paths resolve against the config file's directory.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pakr.node import tomlfields as fields
from pakr.node.tls import write_certificate
from pakr.proto.errors import ConfigError
from pakr.proto.files import write_private_file
from pakr.proto.hostport import is_loopback, split_host_port

DEFAULT_CANARY_USER = "pakr-canary"
CONFIG_NAME = "coordinator.toml"
CONFIG_HEADER = "pakr coordinator configuration (pakr.coordinator.config documents every key)"


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    """The tenant key and user the canary Recover1 uses."""

    tenant_key: Path
    user_id: str = DEFAULT_CANARY_USER


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    """A validated ``coordinator.toml``."""

    path: Path
    listen: str
    manifest: Path
    insecure: bool
    tls_cert: Path | None
    tls_key: Path | None
    canary: CanaryConfig | None
    metrics_listen: str | None
    health_cache_seconds: float = 2.0
    probe_timeout_seconds: float = 2.0

    def to_toml(self, root: Path | None = None) -> dict[str, Any]:
        """The document :func:`parse_config` reads back as this config (at ``self.path``).

        Paths inside ``root`` (default: the config's directory) are written relative to the
        config file, so that directory can be moved whole; others stay absolute.
        """
        base = self.path.parent

        def rel(path: Path) -> str:
            return fields.path_text(path, base, root)

        main: dict[str, Any] = {"listen": self.listen, "manifest": rel(self.manifest)}
        main["insecure"] = self.insecure
        main["health_cache_seconds"] = self.health_cache_seconds
        main["probe_timeout_seconds"] = self.probe_timeout_seconds
        doc: dict[str, Any] = {"coordinator": main}
        tls = {k: rel(v) for k, v in (("cert", self.tls_cert), ("key", self.tls_key)) if v}
        if tls:
            doc["tls"] = tls
        if self.canary is not None:
            doc["canary"] = {
                "tenant_key": rel(self.canary.tenant_key),
                "user_id": self.canary.user_id,
            }
        if self.metrics_listen is not None:
            doc["metrics"] = {"listen": self.metrics_listen}
        return doc

    def save(self, root: Path | None = None) -> None:
        """Write this config to ``self.path`` (0600, atomically); see :meth:`to_toml`."""
        text = fields.dumps(self.to_toml(root), CONFIG_HEADER)
        write_private_file(self.path, text.encode("utf-8"))


def _seconds(table: Mapping[str, Any], key: str, prefix: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise ConfigError(f"{prefix}.{key} must be a number of seconds 0..3600, got {value!r}")
    return float(value)


def parse_config(doc: Mapping[str, Any], path: Path) -> CoordinatorConfig:
    """Validate a parsed TOML document; relative paths resolve against ``path``'s directory."""
    base = path.parent.resolve()
    fields.known(doc, "coordinator.toml", {"coordinator", "tls", "canary", "metrics"})
    main = fields.table(doc, "coordinator")
    fields.known(
        main,
        "coordinator",
        {"listen", "manifest", "insecure", "health_cache_seconds", "probe_timeout_seconds"},
    )
    listen = fields.string(main, "listen", "coordinator")
    host, _ = split_host_port(listen, "coordinator.listen")
    insecure = main.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError("coordinator.insecure must be true or false")
    if insecure and not is_loopback(host):
        raise ConfigError("coordinator.insecure is allowed only on a loopback listen address")
    manifest = fields.path_in(base, fields.string(main, "manifest", "coordinator"))

    cert, key = fields.tls_paths(doc, base, insecure=insecure, insecure_key="coordinator.insecure")

    canary_table = fields.table(doc, "canary")
    fields.known(canary_table, "canary", {"tenant_key", "user_id"})
    canary: CanaryConfig | None = None
    if canary_table:
        user = canary_table.get("user_id", DEFAULT_CANARY_USER)
        if not isinstance(user, str) or not 1 <= len(user.encode("utf-8")) <= 128:
            raise ConfigError("canary.user_id must be 1..128 bytes of UTF-8")
        canary = CanaryConfig(
            fields.path_in(base, fields.string(canary_table, "tenant_key", "canary")), user
        )

    metrics = fields.table(doc, "metrics")
    fields.known(metrics, "metrics", {"listen"})
    metrics_listen = fields.string(metrics, "listen", "metrics") if "listen" in metrics else None
    if metrics_listen is not None:
        split_host_port(metrics_listen, "metrics.listen")

    return CoordinatorConfig(
        path=path.resolve(),
        listen=listen,
        manifest=manifest,
        insecure=insecure,
        tls_cert=cert,
        tls_key=key,
        canary=canary,
        metrics_listen=metrics_listen,
        health_cache_seconds=_seconds(main, "health_cache_seconds", "coordinator", 2.0),
        probe_timeout_seconds=_seconds(main, "probe_timeout_seconds", "coordinator", 2.0),
    )


def load_config(path: str | Path) -> CoordinatorConfig:
    """Read and validate ``coordinator.toml``; ``ConfigError`` names the file and the key."""
    file = Path(path)
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read coordinator config {file}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        return parse_config(doc, file)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def create_coordinator_dir(
    directory: Path,
    *,
    listen: str,
    manifest: Path,
    hosts: Sequence[str] = (),
    canary_key: Path | None = None,
    metrics_listen: str | None = None,
    root: Path | None = None,
) -> CoordinatorConfig:
    """Write ``directory/coordinator.toml`` and a self-signed TLS certificate for the listen
    host and ``hosts``; the loaded config. Paths inside ``root`` are written relative (a local
    cluster passes its directory, so it can be moved whole)."""
    host, _ = split_host_port(listen, "--listen")
    tls = directory / "tls"
    write_certificate(
        tls / "coordinator.crt",
        tls / "coordinator.key",
        common_name="pakr coordinator",
        hosts=[host, *hosts],
    )
    CoordinatorConfig(
        path=directory / CONFIG_NAME,
        listen=listen,
        manifest=manifest.resolve(),
        insecure=False,
        tls_cert=(tls / "coordinator.crt").resolve(),
        tls_key=(tls / "coordinator.key").resolve(),
        canary=None if canary_key is None else CanaryConfig(canary_key.resolve()),
        metrics_listen=metrics_listen,
    ).save(root)
    return load_config(directory / CONFIG_NAME)  # what was written must load
