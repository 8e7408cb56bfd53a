"""Service settings: one frozen Struct, loaded from TOML (kebab-case keys) and overlaid by CLI flags/env."""

from __future__ import annotations

import enum
from pathlib import Path

import msgspec


class SyncMode(enum.StrEnum):
    ALWAYS = "always"  # fsync before any PubAck or ack confirmation is sent
    BATCH_INTERVAL = "batch-interval"  # commit per batch, fsync every sync_interval
    NEVER = "never"  # leave flushing to the OS


class ServiceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="kebab"):
    server: str = ""  # empty: run the embedded nats-server
    port: int = 4222  # embedded server's client port
    leaf_port: int = 7422  # embedded server's leafnode port (loopback)
    host: str = "127.0.0.1"  # embedded server's bind address
    data: Path = Path("streamd-data")
    domain: str = ""
    sync: SyncMode = SyncMode.ALWAYS
    sync_interval: float = 0.2  # seconds, for sync = batch-interval
    leaf: str = ""  # leafnode URL for consumer deliveries; default: the embedded one, or <server host>:7422
    leaf_user: str = ""  # leaf credentials; default: user/password below
    leaf_password: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    creds: str = ""
    nkey_seed: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    name: str = "streamd"
    max_pending_msgs: int = 1_000_000  # published messages waiting for the writer before refusal
    max_pending_bytes: int = 512 << 20
    max_batch_msgs: int = 10_000  # per write transaction
    batch_linger_ms: float = 1.0  # under load, wait this long for more writes before the next commit
    # Atomic batch publish (nats-server's JetStream limits of the same meaning): open batches per stream and in
    # all, messages per batch, staged bytes in all (held in memory until the commit), seconds an idle batch lives.
    atomic_inflight_per_stream: int = 50
    atomic_inflight_total: int = 1000
    atomic_max_msgs: int = 1000
    atomic_max_bytes: int = 64 << 20
    atomic_timeout: float = 10.0
    map_size_mib: int = 1024  # initial LMDB map size; it doubles by itself when full
    check_api: bool = True  # refuse to start when someone already answers the API prefix
    claim_window: float = 0.5  # seconds a starting instance waits for rivals' answers (streamd.server.claim)
    metrics_listen: str = ""  # HOST:PORT (or PORT, on loopback) for /metrics and /healthz; empty: off

    def __post_init__(self) -> None:
        atomic = (self.atomic_inflight_per_stream, self.atomic_inflight_total, self.atomic_max_msgs)
        if min(atomic) < 1 or self.atomic_max_bytes < 1 or not self.atomic_timeout > 0:
            raise ValueError("the atomic-* settings must be positive")
        if self.metrics_listen:
            parse_listen(self.metrics_listen)  # a bad value is refused when the settings are read, not at bind

    @property
    def api_prefix(self) -> str:
        return f"$JS.{self.domain}.API" if self.domain else "$JS.API"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or a bare `PORT` (then 127.0.0.1: an open port is never the default)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"metrics-listen {text!r}: expected HOST:PORT such as 127.0.0.1:9464")
    return host, int(port)


def load_toml(path: Path) -> dict[str, object]:
    """The raw table of a config file; values are validated when merged into ServiceConfig."""
    data = msgspec.toml.decode(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of settings")
    return data


def build(file_values: dict[str, object], overrides: dict[str, object]) -> ServiceConfig:
    """Defaults < file < overrides (flags and STREAMD_* variables, already resolved by the CLI)."""
    merged = {**file_values, **{k.replace("_", "-"): v for k, v in overrides.items() if v is not None}}
    return msgspec.convert(merged, ServiceConfig, dec_hook=_dec_hook, str_keys=True)


def _dec_hook(typ: type, obj: object) -> object:
    if typ is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError


def redact(url: str) -> str:
    """A server URL safe to log: credentials replaced."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
