"""The node's configuration: ``node.toml`` parsed with :mod:`tomllib` into frozen dataclasses.

Everything is validated when the node starts, so a typo fails fast with a :class:`ConfigError`
naming the bad key instead of surfacing as a strange failure under load. Relative paths
resolve against the directory of the config file, so a node directory can be moved whole.

Layout (every table but ``[node]`` is optional)::

    [node]
    id = "<32 hex chars>"        # 16-byte node id, as in the cluster manifest
    index = 1                    # Shamir index 1..255
    listen = "127.0.0.1:7001"
    insecure = false             # plaintext gRPC; allowed only on a loopback address
    log_level = "info"
    crypto_thread = false        # evaluate Recover2 on a second thread (hosts with spare cores)

    [tls]
    cert = "tls/node.crt"
    key = "tls/node.key"

    [storage]
    url = "sqlite:///node.db"    # sqlite:///relative or sqlite:////absolute; postgresql://...

    [hpke]                       # the node's end-to-end encryption key (manifest publishes
    private_key_file = "hpke.key"  # the public half); 64 hex chars, 0600, not in DB backups
    public_key_file = "hpke.pub"   # base64url of the 1216-byte X-Wing public key

    [data_key]                   # exactly one of file / env
    file = "keys/data.key"       # 64 hex characters (a trailing newline is fine)
    # env = "PAKR_DATA_KEY"      # the name of an environment variable holding 64 hex chars

    [keys]                       # key generations (crypto-shredding), apart from the data
    dir = "keys"                 # never backed up beyond the retention window
    roll_hours = 24              # a new generation this often (staggered per node)
    retention_days = 7           # a generation is destroyed this long after it started

    [sweeper]
    interval_seconds = 15        # due lockouts are erased at most this long after the grace

    [tenants]                    # trusted token-signing keys: kid -> public key
    "acme:1" = "ed25519:<base64url>"

    [rate_limit]
    user_rate = 5.0              # requests per second per (tenant, user)
    user_burst = 20
    peer_rate = 500.0            # requests per second per client address
    peer_burst = 1000

    [metrics]
    listen = "127.0.0.1:9100"

    [audit]
    retention_days = 365

    [web]                        # optional browser listener (Connect/gRPC-Web): see webconfig
    listen = "127.0.0.1:8443"
    allowed_origins = ["https://app.example"]
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pakr.node import tomlfields as fields
from pakr.node.webconfig import WebConfig, parse_web
from pakr.proto.errors import ConfigError
from pakr.proto.files import write_private_file
from pakr.proto.hostport import is_loopback, split_host_port

DATA_KEY_LEN = 32
CONFIG_HEADER = "pakr share-server configuration (pakr.node.config documents every key)"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Token-bucket parameters; a rate of 0 disables that limit."""

    user_rate: float = 5.0
    user_burst: int = 20
    peer_rate: float = 500.0
    peer_burst: int = 1000


@dataclass(frozen=True, slots=True)
class DataKeySource:
    """Where the 32-byte data key that seals shares at rest comes from (file or env var)."""

    file: Path | None = None
    env: str | None = None

    def load(self) -> bytes:
        """Read the key now; ``ConfigError`` naming the source when absent or malformed."""
        if self.file is not None:
            where = f"data_key.file ({self.file})"
            try:
                raw = self.file.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read the data key: {exc.strerror}") from None
        else:
            assert self.env is not None
            where = f"data_key.env ({self.env})"
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"{where}: environment variable is not set")
            raw = value.encode()
        return parse_data_key(raw, where)


def parse_data_key(raw: bytes, where: str) -> bytes:
    """Decode a data key stored as 64 hex characters (surrounding whitespace ignored)."""
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ConfigError(f"{where}: the data key must be 64 hex characters") from None
    if len(key) != DATA_KEY_LEN:
        raise ConfigError(f"{where}: the data key must be 64 hex characters (32 bytes)")
    return key


@dataclass(frozen=True, slots=True)
class HpkeKeyFiles:
    """Where the node's HPKE key pair lives (the private file 0600, apart from the data)."""

    private_key_file: Path
    public_key_file: Path


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated ``node.toml``."""

    path: Path
    node_id: bytes
    index: int
    listen: str
    insecure: bool
    tls_cert: Path | None
    tls_key: Path | None
    storage_url: str
    data_key: DataKeySource
    tenants: Mapping[str, str] = field(default_factory=dict)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    metrics_listen: str | None = None
    log_level: str = "info"
    audit_retention_days: int = 365
    crypto_thread: bool = False
    keys_dir: Path = Path("keys")
    key_roll_seconds: float = 86400.0
    key_retention_seconds: float = 7 * 86400.0
    sweep_seconds: float = 15.0
    hpke: HpkeKeyFiles | None = None
    web: WebConfig | None = None  # the browser listener; None: off

    def hpke_files(self) -> HpkeKeyFiles:
        """The ``[hpke]`` key files; ``ConfigError`` for a config written before they existed."""
        if self.hpke is None:
            raise ConfigError(
                f"{self.path}: no [hpke] key: Register2 shares are sealed to a node key since"
                " protocol 2; create one with `pakr node hpke-keygen --config <node.toml>`"
            )
        return self.hpke

    @property
    def node_id_hex(self) -> str:
        return self.node_id.hex()

    def to_toml(self, root: Path | None = None) -> dict[str, Any]:
        """The document :func:`parse_config` reads back as this config (at ``self.path``).

        Paths inside ``root`` (default: the config's directory) are written relative to the
        config file, so the directory can be moved whole; others stay absolute.
        """
        base = self.path.parent

        def rel(path: Path) -> str:
            return fields.path_text(path, base, root)

        storage = self.storage_url
        if storage.startswith("sqlite:///"):
            storage = "sqlite:///" + rel(sqlite_path(storage))
        doc: dict[str, Any] = {
            "node": {
                "id": self.node_id_hex,
                "index": self.index,
                "listen": self.listen,
                "insecure": self.insecure,
                "log_level": self.log_level,
                "crypto_thread": self.crypto_thread,
            }
        }
        tls = {k: rel(v) for k, v in (("cert", self.tls_cert), ("key", self.tls_key)) if v}
        if tls:
            doc["tls"] = tls
        doc["storage"] = {"url": storage}
        if self.hpke is not None:
            doc["hpke"] = {
                "private_key_file": rel(self.hpke.private_key_file),
                "public_key_file": rel(self.hpke.public_key_file),
            }
        source = self.data_key
        doc["data_key"] = {"file": rel(source.file)} if source.file else {"env": source.env}
        doc["keys"] = {
            "dir": rel(self.keys_dir),
            "roll_hours": self.key_roll_seconds / 3600.0,
            "retention_days": self.key_retention_seconds / 86400.0,
        }
        doc["sweeper"] = {"interval_seconds": self.sweep_seconds}
        doc["tenants"] = dict(sorted(self.tenants.items()))
        doc["rate_limit"] = {
            "user_rate": self.rate_limits.user_rate,
            "user_burst": self.rate_limits.user_burst,
            "peer_rate": self.rate_limits.peer_rate,
            "peer_burst": self.rate_limits.peer_burst,
        }
        if self.metrics_listen is not None:
            doc["metrics"] = {"listen": self.metrics_listen}
        doc["audit"] = {"retention_days": self.audit_retention_days}
        if self.web is not None:
            doc["web"] = self.web.to_toml(rel)
        return doc

    def save(self, root: Path | None = None) -> None:
        """Write this config to ``self.path`` (0600, atomically); see :meth:`to_toml`."""
        text = fields.dumps(self.to_toml(root), CONFIG_HEADER)
        write_private_file(self.path, text.encode("utf-8"))


# ------------------------------------------------------------------------------ parsing


def resolve_storage_url(url: str, base: Path) -> str:
    """Make a relative ``sqlite:///`` path absolute against ``base``; check the scheme."""
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :]
        if not rest:
            raise ConfigError("storage.url: sqlite:/// needs a file path")
        return "sqlite://" + str(fields.path_in(base, rest).resolve())
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise ConfigError(
        f"storage.url must start with sqlite:/// or postgresql://, got {url.split(':')[0]!r}"
    )


def keys_share_data_directory(config: NodeConfig) -> bool:
    """Whether the key directory is the SQLite database's directory (a copy of one then
    takes the other with it)."""
    if not config.storage_url.startswith("sqlite:///"):
        return False
    return sqlite_path(config.storage_url).parent.resolve() == config.keys_dir.resolve()


def sqlite_path(url: str) -> Path:
    """The file of a resolved ``sqlite:///`` URL (``sqlite:////abs/path``)."""
    if not url.startswith("sqlite:///"):
        raise ConfigError("storage.url is not an sqlite:/// URL")
    return Path(url[len("sqlite://") :])


def parse_config(doc: Mapping[str, Any], path: Path) -> NodeConfig:
    """Validate a parsed TOML document; relative paths resolve against ``path``'s directory."""
    base = path.parent.resolve()
    fields.known(
        doc,
        "node.toml",
        {
            "node",
            "tls",
            "storage",
            "data_key",
            "hpke",
            "tenants",
            "rate_limit",
            "metrics",
            "audit",
            "keys",
            "sweeper",
            "web",
        },
    )
    node = fields.table(doc, "node", required=True)
    fields.known(node, "node", {"id", "index", "listen", "insecure", "log_level", "crypto_thread"})
    id_text = fields.string(node, "id", "node")
    try:
        node_id = bytes.fromhex(id_text)
    except ValueError:
        raise ConfigError("node.id must be 32 hex characters") from None
    if len(node_id) != 16 or id_text != id_text.lower():
        raise ConfigError("node.id must be 32 lowercase hex characters (16 bytes)")
    index = fields.integer(node, "index", "node", 0, 1, 255)
    listen = fields.string(node, "listen", "node")
    host, _ = split_host_port(listen, "node.listen")
    insecure = node.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError("node.insecure must be true or false")
    if insecure and not is_loopback(host):
        raise ConfigError(
            "node.insecure is allowed only on a loopback listen address; configure [tls]"
        )
    crypto_thread = node.get("crypto_thread", False)
    if not isinstance(crypto_thread, bool):
        raise ConfigError("node.crypto_thread must be true or false")
    log_level = fields.string(node, "log_level", "node", "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"node.log_level must be one of {', '.join(LOG_LEVELS)}")

    tls_cert, tls_key = fields.tls_paths(doc, base, insecure=insecure, insecure_key="node.insecure")

    storage = fields.table(doc, "storage")
    fields.known(storage, "storage", {"url"})
    storage_url = resolve_storage_url(
        fields.string(storage, "url", "storage", "sqlite:///node.db"), base
    )

    data_key = fields.table(doc, "data_key", required=True)
    fields.known(data_key, "data_key", {"file", "env"})
    if ("file" in data_key) == ("env" in data_key):
        raise ConfigError("data_key needs exactly one of data_key.file or data_key.env")
    source = (
        DataKeySource(file=fields.path_in(base, fields.string(data_key, "file", "data_key")))
        if "file" in data_key
        else DataKeySource(env=fields.string(data_key, "env", "data_key"))
    )

    hpke_table = fields.table(doc, "hpke")
    fields.known(hpke_table, "hpke", {"private_key_file", "public_key_file"})
    hpke = (
        HpkeKeyFiles(
            private_key_file=fields.path_in(
                base, fields.string(hpke_table, "private_key_file", "hpke")
            ),
            public_key_file=fields.path_in(
                base, fields.string(hpke_table, "public_key_file", "hpke")
            ),
        )
        if hpke_table
        else None
    )

    tenants_table = fields.table(doc, "tenants")
    tenants: dict[str, str] = {}
    for kid, key_text in tenants_table.items():
        tenant, sep, number = kid.rpartition(":")
        if not sep or not tenant or not number.isdigit():
            raise ConfigError(f"tenants.{kid}: a key id must look like <tenant>:<number>")
        if not isinstance(key_text, str) or not key_text.startswith("ed25519:"):
            raise ConfigError(f"tenants.{kid} must be a string 'ed25519:<base64url>'")
        tenants[kid] = key_text

    rl = fields.table(doc, "rate_limit")
    fields.known(rl, "rate_limit", {"user_rate", "user_burst", "peer_rate", "peer_burst"})
    defaults = RateLimits()
    limits = RateLimits(
        user_rate=fields.number(rl, "user_rate", "rate_limit", defaults.user_rate),
        user_burst=fields.integer(rl, "user_burst", "rate_limit", defaults.user_burst, 1, 10**9),
        peer_rate=fields.number(rl, "peer_rate", "rate_limit", defaults.peer_rate),
        peer_burst=fields.integer(rl, "peer_burst", "rate_limit", defaults.peer_burst, 1, 10**9),
    )

    metrics = fields.table(doc, "metrics")
    fields.known(metrics, "metrics", {"listen"})
    metrics_listen = fields.string(metrics, "listen", "metrics") if "listen" in metrics else None
    if metrics_listen is not None:
        split_host_port(metrics_listen, "metrics.listen")

    audit = fields.table(doc, "audit")
    fields.known(audit, "audit", {"retention_days"})
    retention = fields.integer(audit, "retention_days", "audit", 365, 1, 100_000)

    keys = fields.table(doc, "keys")
    fields.known(keys, "keys", {"dir", "roll_hours", "retention_days"})
    keys_dir = fields.path_in(base, fields.string(keys, "dir", "keys", "keys"))
    roll_hours = fields.number(keys, "roll_hours", "keys", 24.0)
    retention_days = fields.number(keys, "retention_days", "keys", 7.0)
    if not 0 < roll_hours <= 24 * 366:
        raise ConfigError("keys.roll_hours must be above 0 and at most a year")
    if retention_days * 24 < roll_hours:
        raise ConfigError("keys.retention_days must cover at least one keys.roll_hours period")

    sweeper = fields.table(doc, "sweeper")
    fields.known(sweeper, "sweeper", {"interval_seconds"})
    sweep_seconds = fields.number(sweeper, "interval_seconds", "sweeper", 15.0)
    if not 0 < sweep_seconds <= 3600:
        raise ConfigError("sweeper.interval_seconds must be above 0 and at most 3600")

    return NodeConfig(
        path=path.resolve(),
        node_id=node_id,
        index=index,
        listen=listen,
        insecure=insecure,
        tls_cert=tls_cert,
        tls_key=tls_key,
        storage_url=storage_url,
        data_key=source,
        tenants=tenants,
        rate_limits=limits,
        metrics_listen=metrics_listen,
        log_level=log_level,
        audit_retention_days=retention,
        crypto_thread=crypto_thread,
        keys_dir=keys_dir,
        key_roll_seconds=roll_hours * 3600.0,
        key_retention_seconds=retention_days * 86400.0,
        sweep_seconds=sweep_seconds,
        hpke=hpke,
        web=parse_web(doc, base),
    )


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate ``node.toml``; ``ConfigError`` names the file and the bad key."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read node config {file}: {exc.strerror}") from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        return parse_config(doc, file)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
